"""Traces as the older writers stored them (schema 1 and 2), and the run the fixtures in tests/data hold.

`as_v1` and `as_v2` port the writers as they were (schema 1 before commit 9b05613: each step stored
whole, a record carrying its own calls, no calls channel; schema 2 as of commit 66a0d9d: calls once, a
per-source step's record as a JSON Patch, long strings as attachments, raw answers inline, no run
spec). `python tests/trace_versions.py` writes tests/data/traces/v1.json and v2.json from one scripted
run; the tests read those frozen files, so a change of today's reader that breaks an old trace fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gar_agent.trace.schema import Trace, intern_strings, record_patch

DATA = Path(__file__).parent / "data" / "traces"


def _record(state: dict, source: int) -> dict | None:
    record = state.get("source")
    if isinstance(record, dict) and record.get("index") == source:
        return record
    return next((r for r in state.get("sources") or [] if isinstance(r, dict) and r.get("index") == source), None)


def as_v2(trace: Trace) -> dict:
    """The trace as schema 2 stored it."""
    data = trace.model_dump(mode="json", exclude={"spec", "steps", "schema_version"})
    calls: list[dict] = []
    records: dict[int, dict] = {}
    steps = []
    for step in trace.steps:
        stored = step.model_dump(mode="json", exclude={"calls", "update"})
        ids = list(range(len(calls), len(calls) + len(step.calls)))
        calls.extend(c.model_dump(mode="json") for c in step.calls)
        wrote = step.update.channels()
        record = _record(wrote, step.source) if step.source is not None else None
        if record is not None:
            wrote = {k: v for k, v in wrote.items() if k not in ("source", "sources")}
            stored["changes"] = record_patch(records.get(step.source, {}), record)
            records[step.source] = record
        else:
            for r in wrote.get("sources") or []:
                records[r["index"]] = r
        steps.append({**stored, "call_ids": ids, "wrote": wrote})
    data["final_state"]["calls"] = []
    attachments: dict[str, str] = {}
    body = intern_strings({**data, "steps": steps, "calls": calls}, attachments)
    return {"schema_version": 2, **body, "attachments": attachments}


def as_v1(trace: Trace) -> dict:
    """The trace as schema 1 stored it: every step whole, Generate's and each source's calls in their records."""
    data = trace.model_dump(mode="json", exclude={"spec", "steps", "schema_version"})
    done: list[dict] = []

    def with_calls(state: dict) -> dict:
        out = dict(state)
        if isinstance(out.get("generate"), dict):
            out["generate"] = {**out["generate"], "calls": [c for c in done if c["source"] is None]}
        for key in ("source", "sources"):
            if key in out:
                recs = out[key] if key == "sources" else [out[key]]
                recs = [{**r, "calls": [c for c in done if c["source"] == r["index"]]} for r in recs]
                out[key] = recs if key == "sources" else recs[0]
        return out

    steps = []
    for step in trace.steps:
        done.extend(c.model_dump(mode="json", exclude={"media_refs"}) for c in step.calls)
        stored = step.model_dump(mode="json", exclude={"update"})
        steps.append({**stored, "state": with_calls(step.update.channels())})
    final = with_calls(data["final_state"])
    final.pop("calls")
    return {"schema_version": 1, **data, "steps": steps, "final_state": final}


def record_run(image: Path, audio: Path, answers: dict, settings) -> Trace:
    """A scripted run of the shipped graph, as its trace (in memory)."""
    from gar_agent.media import load_media
    from gar_agent.models.scripted import ScriptedChatModel
    from gar_agent.prompts import PromptSet
    from gar_agent.record import build_trace
    from gar_agent.runner import run_clip
    from gar_agent.topology import load_topology

    media = load_media(image, audio)
    topology, prompts = load_topology("gar"), PromptSet()
    outcome = run_clip(media, settings, ScriptedChatModel(script=answers), topology=topology, prompts=prompts)
    return build_trace(outcome, media, topology, prompts, backend="scripted")


def _vote(av: float, keep: bool) -> str:
    return json.dumps(
        {"av_consistency": av, "keep": keep, "role_tags": ["body"], "anchor_votes": [{"anchor": "body", "score": 0.9}]}
    )


# the run of the fixtures: one source, two Analyze passes of two votes (one unusable), the gate sends it
# to Refine, which moves the box
FIXTURE_ANSWERS = {
    "audio": [json.dumps({"audio_class": "violin", "audio_confidence_score": 0.8})],
    "generate": [json.dumps({"bbox": [38, 70, 128, 215], "description": "a violin"})],
    "analyze": [_vote(0.9, True), "not json", _vote(0.2, False), _vote(0.3, False)],
    "refine": [json.dumps({"bbox": [30, 60, 120, 210], "changed": True, "refined_description": "the violin"})],
}


def main() -> None:
    import tempfile

    from gar_agent.demo import make_example
    from gar_agent.state import Settings

    with tempfile.TemporaryDirectory() as tmp:
        image, audio, _ = make_example(Path(tmp))
        trace = record_run(image, audio, FIXTURE_ANSWERS, Settings(n_votes=4, votes_per_call=2, tau_av=0.5))
    for info in trace.inputs.values():  # where the inputs lay is nothing the fixtures need
        info.path = f"example/{Path(info.path).name}"
    trace.final_state.image.path, trace.final_state.audio.path = trace.inputs["image"].path, trace.inputs["audio"].path
    trace.result.image.path, trace.result.audio.path = trace.inputs["image"].path, trace.inputs["audio"].path
    trace.run_id, trace.created = "fixture-run-0001", "2026-01-01T00:00:00+00:00"
    DATA.mkdir(parents=True, exist_ok=True)
    for name, doc in (("v1.json", as_v1(trace)), ("v2.json", as_v2(trace))):
        (DATA / name).write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
        print(f"wrote {DATA / name} ({(DATA / name).stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The documents the viewer's page shows, built from typed traces, results and sample files.

When the trace format changes (e.g. each call stored once), this module is what follows it: a run's
result through `result_view`, differences with `gar trace diff`'s `diff_traces`. The folder index
(`gar_agent.view.index`) lists runs and samples with the rows built here; the page and the server
only see these documents.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gar_agent.rerun.diff import diff_traces
from gar_agent.result import RunResult
from gar_agent.state import SourceRecord
from gar_agent.trace.schema import Trace
from gar_agent.trace.steps import GenerateUpdate
from gar_agent.view.graph_svg import graph_svg, taken_path

DEFAULT_PROTOCOL = "gar"  # traces written before protocols were recorded ran GAR's own prompts


def frame_size(trace: Trace) -> dict:
    """{width, height} of the run's frame (the final state's image, else the recorded input)."""
    img = trace.final_state.image or trace.inputs.get("image")
    return {"width": img.width if img else 0, "height": img.height if img else 0}


def to_pixels(box: list[float], width: int, height: int) -> list[int]:
    """A normalised xyxy box in pixels of a width x height frame (inside the frame)."""
    px = [round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height)]
    return [min(max(v, 0), (width if i % 2 == 0 else height) - 1) for i, v in enumerate(px)]


# --------------------------------------------------------------------------- result documents


def result_json(result) -> dict | None:
    """A run's result as its JSON document, whether typed (gar_agent.result.RunResult) or a dict."""
    return result.model_dump(mode="json") if isinstance(result, RunResult) else result


def typed_result(result) -> RunResult | None:
    """A run's result as the typed RunResult (a sample file's is JSON, read as untrusted); None if it is not one."""
    if isinstance(result, RunResult) or result is None:
        return result
    try:
        return RunResult.model_validate(result)
    except ValidationError:
        return None


def _json(model) -> dict | None:
    return None if model is None else model.model_dump(mode="json")


def result_view(result) -> dict:
    """The fields of a run's result (gar_agent.result) the viewer shows, read in one place."""
    result = typed_result(result)
    if result is None:
        return {"sources": [], "calls": None, "wall_s": None, "error": None, "settings": {}}
    settings = result.settings.model_dump(mode="json")
    return {
        "sources": [
            {
                "box": s.box,
                "initial_box": s.initial_box,
                "audio_class": s.audio_class,
                "audio_confidence": s.audio_confidence,
                "refined": s.refined,
                "gate": _json(s.gate),
                "analysis": _json(s.analysis),
            }
            for s in result.sources
        ],
        "calls": result.usage.model_calls,
        "wall_s": result.usage.wall_s,
        "error": result.error,
        "settings": settings,
        "protocol": result.settings.protocol or DEFAULT_PROTOCOL,
    }


def run_summary(trace: Trace, ref: str) -> dict:
    """A runs-list row of a trace."""
    res = trace.result
    settings = trace.settings
    return {
        "ref": ref,
        "id": trace.run_id,
        "time": trace.created,
        "image": input_name(trace),
        "k": settings.sources,
        "n": settings.n_votes,
        "tau_av": settings.tau_av,
        "tau_audio": settings.tau_audio,
        "classes": [s.audio_class for s in res.sources if s.audio_class],
        # one word per run: failed, else what happened to its sources ("refined", "skipped", "2 refined")
        "status": "failed" if res.error is not None else _status_text([s.status for s in res.sources]),
        "graph": trace.graph.name,
        "protocol": protocol_of(trace),
        "boxes": [s.box for s in res.sources],
        "refined": res.refined,
        "calls": res.usage.model_calls,
        "wall_s": round(trace.wall_s, 3),
        "failed": res.error is not None,
        "run_error": res.error,
        "kind": "fork" if trace.fork else "replay" if trace.parent else "run",
    }


def input_name(trace: Trace) -> str:
    """What a run ran on, by name: the video and the time asked for, else the image file."""
    video = trace.inputs.get("video")
    if video is not None:
        at = "" if video.at_s is None else f" @ {video.at_s:g} s"
        return Path(video.path).name + at
    return Path(trace.inputs["image"].path).name if "image" in trace.inputs else ""


def _status_text(statuses: list[str]) -> str:
    words = {"skipped": "skipped", "not_refined": "not refined", "not_analysed": "not analysed"}
    counts: dict[str, int] = {}
    for st in statuses:
        w = words.get(st, st)
        counts[w] = counts.get(w, 0) + 1
    if not counts:
        return "no sources"
    return ", ".join(w if n == 1 and len(statuses) == 1 else f"{n} {w}" for w, n in counts.items())


def protocol_of(trace: Trace) -> str:
    """The prompt protocol a run used ("gar" for traces written before protocols were recorded)."""
    value = trace.settings.protocol or trace.result.settings.protocol
    return str(value) if value else DEFAULT_PROTOCOL


def sample_row(sid: str, doc: dict | None) -> dict:
    """A samples-table row of an evaluation (doc: from the eval store's read_sample)."""
    if doc is None:
        return {
            "id": sid,
            "unreadable": True,
            "failed": True,
            "error": "sample file is unreadable or half-written",
            "ciou": None,
            "ap": None,
            "matched_mean_iou": None,
            "refined": 0,
            "skipped": 0,
            "classes": [],
            "wall_s": None,
            "calls": None,
            "trace": None,
            "sources": [],
        }
    score = doc["score"]
    result = typed_result(doc.get("result"))
    res = result_view(result)
    return {
        "id": sid,
        "failed": bool(score.failed),
        "error": score.error,
        "ciou": doc.get("ciou"),
        "ap": doc.get("ap"),
        "matched_mean_iou": doc.get("matched_mean_iou"),
        "refined": score.refined,
        "skipped": score.skipped,
        # the benchmark's classes (ground truth), then the predicted ones: the class filter finds either
        "classes": list(
            dict.fromkeys([*doc.get("gt_classes", []), *(s["audio_class"] for s in res["sources"] if s["audio_class"])])
        ),
        "wall_s": doc.get("wall_s"),
        "calls": res["calls"],
        "trace": f"traces/{sid}" if doc.get("trace") else None,
        "sources": [
            {
                "av": s.analysis.av_consistency if s.analysis else None,
                "keep": s.analysis.keep if s.analysis else None,
                "audio_confidence": s.audio_confidence,
                "gate": _json(s.gate),
            }
            for s in (result.sources if result else [])
        ],
    }


def gate_stats(rows: list[dict], config: dict | None) -> dict:
    """How the gate decided over the evaluation: sources refined or skipped, and why."""
    settings = (config or {}).get("settings") or {}
    sources = [s for r in rows for s in r.get("sources", [])]
    gated = [s for s in sources if s["gate"]]
    reasons: dict[str, int] = {}
    for s in gated:
        for reason in s["gate"].get("reasons") or []:
            name = reason.split(" ")[0] if not reason.startswith("keep") else "keep is false"
            reasons[name] = reasons.get(name, 0) + 1
    avs = [s["av"] for s in gated if s["av"] is not None]
    confs = [s["audio_confidence"] for s in gated if s["audio_confidence"] is not None]
    return {
        "tau_av": settings.get("tau_av"),
        "tau_audio": settings.get("tau_audio"),
        "sources": len(sources),
        "gated": len(gated),
        "refine": sum(1 for s in gated if s["gate"].get("refine")),
        "skip": sum(1 for s in gated if not s["gate"].get("refine")),
        "reasons": reasons,
        "keep_rate": (sum(1 for s in gated if s["keep"]) / len(gated)) if gated else None,
        "mean_av": (sum(avs) / len(avs)) if avs else None,
        "mean_audio_confidence": (sum(confs) / len(confs)) if confs else None,
    }


# --------------------------------------------------------------------------- one run


def _record_fields(record: SourceRecord) -> dict:
    """The parts of a source record one step shows."""
    return {k: _json(getattr(record, k)) for k in ("analysis", "gate", "refinement")} | {"error": record.error}


def run_document(trace: Trace, ref: str, gt: list[list[int]] | None = None) -> dict:
    """Everything the run page shows: settings, graph and path, steps with their boxes, final state."""
    final = trace.final_state
    current: dict[int, list[int]] = {}  # source -> box as of the step being walked
    initial: dict[int, list[int]] = {}
    classes: dict[int, str] = {s.index: s.audio_class for s in final.sources}
    votes_seen: dict[int, int] = {}
    steps: list[dict[str, Any]] = []
    for step in trace.steps:
        update = step.update
        detail: dict = {"kind": "other"}
        refinement = None  # a Refine step's: the box before it is drawn too
        records = update.records()
        if isinstance(update, GenerateUpdate):
            gen = update.generate
            detail = {
                "kind": "generate",
                "audio": [a.model_dump(mode="json") for a in gen.audio],
                "boxes": [b.model_dump(mode="json") for b in gen.boxes],
                "pairing": gen.pairing,
                "sources": [
                    {
                        "index": s.index,
                        "initial_box": s.initial_box,
                        "description": s.description,
                        "audio_class": s.audio_class,
                        "audio_confidence": s.audio_confidence,
                    }
                    for s in update.sources
                ],
                "error": update.error,
            }
            for s in update.sources:
                initial[s.index] = current[s.index] = s.initial_box
                classes.setdefault(s.index, s.audio_class or "")
        elif records and step.source is not None:
            record = next((r for r in records if r.index == step.source), records[0])
            before = votes_seen.get(step.source, 0)
            votes_seen[step.source] = len(record.votes)
            detail = {
                "kind": step.node if step.node in ("analyze", "gate", "refine") else "source",
                "votes": [v.model_dump(mode="json") for v in record.votes],
                "new_votes": [v.index for v in record.votes[before:]],
                **_record_fields(record),
            }
            refinement = record.refinement if step.node == "refine" else None
            if record.box:
                current[step.source] = record.box
            initial.setdefault(step.source, record.initial_box)
        boxes = [
            {"kind": "initial", "source": i, "box": initial[i], "label": classes.get(i, "")}
            for i in sorted(initial)
            if initial[i]
        ]
        if refinement is not None and refinement.previous_box:
            boxes.append({"kind": "previous", "source": step.source, "box": refinement.previous_box, "label": ""})
        boxes += [
            {"kind": "current", "source": i, "box": current[i], "label": classes.get(i, "")} for i in sorted(current)
        ]
        boxes += [{"kind": "gt", "source": None, "box": box, "label": "GT"} for box in gt or []]
        steps.append(
            {
                "index": step.index,
                "node": step.node,
                "graph_node": graph_node(step.node, step.namespace),
                "source": step.source,
                "pass": step.pass_index,
                "elapsed_s": step.elapsed_s,
                "usage": step.usage.model_dump(),
                "calls": [c.model_dump(mode="json") for c in step.calls],
                "detail": detail,
                "state": step.state if detail["kind"] == "other" else None,
                "boxes": boxes,
            }
        )
    res = result_view(trace.result)
    final_boxes = []
    for i, src in enumerate(trace.result.sources):
        if src.initial_box:
            final_boxes.append({"kind": "initial", "source": i, "box": src.initial_box, "label": src.audio_class})
        if src.box:
            final_boxes.append({"kind": "final", "source": i, "box": src.box, "label": src.audio_class})
    for box in gt or []:
        final_boxes.append({"kind": "gt", "source": None, "box": box, "label": "GT"})
    path_nodes, path_edges = taken_path(trace.graph.edges, [(s["graph_node"], s["source"]) for s in steps])
    return {
        "ref": ref,
        "run_id": trace.run_id,
        "created": trace.created,
        "parent": trace.parent,
        "fork": trace.fork.model_dump() if trace.fork else None,
        "backend": trace.backend,
        "protocol": protocol_of(trace),
        "package_version": trace.package_version,
        "graph": {"name": trace.graph.name, "path": trace.graph.path, "sha256": trace.graph.sha256},
        "graph_svg": graph_svg(trace.graph.nodes, trace.graph.edges, path_nodes, path_edges),
        "settings": trace.settings.model_dump(mode="json"),
        "inputs": {k: {**v.model_dump(), "name": Path(v.path).name} for k, v in trace.inputs.items()},
        "image": frame_size(trace),
        "audio": final.audio.model_dump(mode="json") if final.audio else None,
        "notices": trace.notices,
        "steps": steps,
        "final": {"boxes": final_boxes, "error": res["error"], "sources": res["sources"]},
        "gt": gt,
        "result": result_json(trace.result),
        "usage": {"calls": res["calls"], "wall_s": trace.wall_s},
    }


def graph_node(node: str, namespace: list[str]) -> str:
    """The topology's node id of a step: a subgraph's nodes are `subgraph:node`."""
    if namespace:
        return f"{namespace[0].split(':')[0]}:{node}"
    return node


# --------------------------------------------------------------------------- two runs


def diff_document(a: Trace, b: Trace, ref_a: str, ref_b: str) -> dict:
    """Two runs side by side, with what `gar trace diff` finds different."""
    d = diff_traces(a, b)
    sides = []
    for trace, ref in ((a, ref_a), (b, ref_b)):
        res = result_view(trace.result)
        sides.append(
            {
                "ref": ref,
                "run_id": trace.run_id,
                "created": trace.created,
                "graph": trace.graph.name,
                "protocol": protocol_of(trace),
                "settings": trace.settings.model_dump(mode="json"),
                "image": frame_size(trace),
                "boxes": [
                    {"kind": "final", "source": i, "box": s.box, "label": s.audio_class}
                    for i, s in enumerate(trace.result.sources)
                    if s.box
                ],
                "error": res["error"],
                "calls": res["calls"],
                "wall_s": trace.wall_s,
            }
        )
    return {
        "a": sides[0],
        "b": sides[1],
        "same": d.same,
        "settings": [list(x) for x in d.settings],
        "answers": [list(x) for x in d.answers],
        "decisions": [list(x) for x in d.decisions],
        "boxes": [{"source": i, "a": ba, "b": bb, "iou": iou} for i, ba, bb, iou in d.boxes],
    }

"""The saved-run schema: the one place that says what a trace contains, and how it is stored.

A trace is one versioned JSON document per run: what ran (graph topology and file hash, prompt
hashes, settings), on what (inputs by path, hash and size), every step in order (node, source,
pass, the model calls with media referenced by hash, what the step wrote, usage, time), and the
final state and result. Everything needed to replay the run without the model is here.

In memory a `Trace` holds each step's calls and its typed update (gar_agent.trace.steps: Generate's,
a source's, an error, nothing, or a researcher's other channels). On disk (schema version 3,
`to_document` / `from_document`) it is stored linear in size, as inspect_ai stores its logs:
- every model call once, in `calls`; a step lists the indices of the calls it made;
- a step's `update` is stored with its `kind`; a source's update as a JSON Patch (RFC 6902) of its
  record, so the votes of pass k are stored once, not again by every later step;
- a raw answer is stored once, in its call: a vote, a refinement or a Generate answer holds
  `answer: [call index, answer index]` in place of the text;
- every string longer than 80 characters (a prompt, an answer) is stored once in `attachments`
  and referenced as `attachment://<hash>`, so a prompt asked N times is stored once;
- the final state's calls are the trace's calls (not stored twice);
- `spec`, the run spec (gar_agent.spec.RunSpec: backend name and options, graph name, sha256 and
  source, prompt templates' texts, protocol, settings); its long texts are attachments like any other
  string. A trace in an evaluation folder records the spec without the texts (the folder's spec.json
  holds them once). The recorded graph source is shown and diffed, never run.
Older documents are read by `from_document`: version 1 (each step storing the whole dict it wrote,
records carrying their calls) and version 2 (calls once, a record's patch, other channels as a dict,
raw answers inline, no spec: `spec` is None); their steps' dicts are typed by `classify_update`, as
a live run's are (tests/data/traces holds one run as each).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import jsonpatch
from pydantic import BaseModel, Field, ValidationError, field_validator

from gar_agent.result import RunResult
from gar_agent.spec import RunSpec
from gar_agent.state import ModelCall, RunState, Settings, Usage
from gar_agent.trace.steps import EmptyUpdate, StepUpdate, classify_update

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
ATTACHMENT = "attachment://"
INLINE_LIMIT = 80  # longer strings are stored once, as attachments


class InputFile(BaseModel):
    """An input as it was on disk when the run started."""

    path: str
    sha256: str
    size: int
    width: int | None = None
    height: int | None = None
    duration_s: float | None = None
    # a video input (`gar run VIDEO`, `gar track`): its rate and rotation, and which frame and audio were used
    fps: float | None = None
    rotation: int | None = None
    at_s: float | None = Field(None, description="The time asked for (--at).")
    frame_time_s: float | None = Field(None, description="Start time of the frame shown at at_s.")
    window_s: tuple[float, float] | None = Field(None, description="The audio window cut from the video.")


class MediaRef(BaseModel):
    """What the model was shown for one kind of media, by hash (not inlined)."""

    sha256: str
    mime_type: str


class GraphInfo(BaseModel):
    """The topology that ran."""

    name: str
    path: str
    sha256: str
    nodes: list[str]
    edges: list[tuple[str, str, bool]] = Field(description="(source, target, conditional)")


class TraceCall(ModelCall):
    """A model call with its media referenced by the hash of what was shown."""

    media_refs: dict[str, str] = Field(default_factory=dict, description="kind -> sha256")


class TraceStep(BaseModel):
    """One node execution."""

    index: int
    node: str
    source: int | None = None
    pass_index: int | None = Field(None, description="For looped nodes: 1 for the first pass, ...")
    namespace: list[str] = Field(default_factory=list)
    calls: list[TraceCall] = Field(default_factory=list, description="Model calls made in this step.")
    update: StepUpdate = Field(default_factory=EmptyUpdate, description="What the step wrote, typed.")
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0

    @property
    def state(self) -> dict:
        """What the step wrote as the plain dict schema 1 and 2 held (notebooks written against them)."""
        return {**self.update.channels(), "calls": [c.model_dump(mode="json") for c in self.calls]}


class Fork(BaseModel):
    """How a forked run differs from its parent."""

    from_node: str
    edits: list[str]


class Trace(BaseModel):
    """A whole run."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created: str
    package_version: str
    parent: str | None = Field(None, description="Run id this run replays or forks.")
    fork: Fork | None = None
    backend: str = ""
    spec: RunSpec | None = Field(None, description="What decided the run (schema 3); None in older traces.")
    graph: GraphInfo
    prompts_dir: str
    prompts: dict[str, str] = Field(description="Template file -> sha256.")
    settings: Settings
    inputs: dict[str, InputFile]
    media: dict[str, MediaRef]
    embedded_media: dict[str, str] = Field(default_factory=dict, description="kind -> file beside the trace.")
    notices: list[str] = Field(default_factory=list)
    steps: list[TraceStep]
    final_state: RunState
    result: RunResult
    wall_s: float = 0.0

    @field_validator("final_state")
    @classmethod
    def _inputs_recorded(cls, state: RunState) -> RunState:
        # a run records its frame and audio (its result needs them); replay and fork read them here, so a
        # trace without them is refused when read, with one line, not when a reader reaches for them
        if state.image is None or state.audio is None:
            raise ValueError("the final state records no image or no audio")
        return state

    def calls(self) -> list[TraceCall]:
        """Every model call in step order."""
        return [c for s in self.steps for c in s.calls]


# --- storage ---------------------------------------------------------------------------------------


_PLAIN = (int, float, bool, type(None))  # values intern_strings passes through without a call (most of a trace)


def attachment_key(text: str) -> str:
    """The key a long string is stored under: its sha256 (32 hex digits), so a reader can check it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def intern_strings(value: Any, attachments: dict[str, str]) -> Any:
    """The value with every long string replaced by a reference to its attachment (stored once)."""
    kind = type(value)
    if kind is str:
        if len(value) <= INLINE_LIMIT and not value.startswith(ATTACHMENT):
            return value
        key = attachment_key(value)
        attachments[key] = value
        return ATTACHMENT + key
    if kind is list:
        return [v if type(v) in _PLAIN else intern_strings(v, attachments) for v in value]
    if kind is dict:
        return {k: v if type(v) in _PLAIN else intern_strings(v, attachments) for k, v in value.items()}
    return value


def resolve_strings(value: Any, attachments: dict[str, str]) -> Any:
    """The value with every `attachment://<key>` replaced by its text (ValueError when one is missing)."""
    if isinstance(value, str) and value.startswith(ATTACHMENT):
        key = value[len(ATTACHMENT) :]
        if key not in attachments:
            raise ValueError(f"attachment {key} is missing")
        return attachments[key]
    if isinstance(value, list):
        return [resolve_strings(v, attachments) for v in value]
    if isinstance(value, dict):
        return {k: resolve_strings(v, attachments) for k, v in value.items()}
    return value


def _pointer(key: str) -> str:
    return "/" + str(key).replace("~", "~0").replace("/", "~1")


def record_patch(before: Any, after: Any, path: str = "") -> list[dict]:
    """RFC 6902 operations turning one source record into the next.

    Objects are compared key by key; a list that only grew (the votes) gets one `add` per new item;
    another changed list (the aggregate's anchors, re-sorted) gets jsonpatch's list diff. What a
    step does to a record costs what it changed, not the record's size.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        ops: list[dict] = []
        for key, new in after.items():
            if key not in before:
                ops.append({"op": "add", "path": path + _pointer(key), "value": new})
            elif before[key] != new:
                ops.extend(record_patch(before[key], new, path + _pointer(key)))
        ops.extend({"op": "remove", "path": path + _pointer(k)} for k in before if k not in after)
        return ops
    if isinstance(before, list) and isinstance(after, list) and before != after:
        if len(after) > len(before) and after[: len(before)] == before:
            return [
                {"op": "add", "path": f"{path}/{i}", "value": v}
                for i, v in enumerate(after[len(before) :], len(before))
            ]
        return [
            {**op, "path": path + op["path"], **({"from": path + op["from"]} if "from" in op else {})}
            for op in jsonpatch.make_patch(before, after).patch
        ]
    return [] if before == after else [{"op": "replace", "path": path, "value": after}]


def _answer_index(calls: list[dict]) -> dict[str, list[int]]:
    """Each answer text -> [call index, answer index] of the first call that holds it."""
    index: dict[str, list[int]] = {}
    for c, call in enumerate(calls):
        for j, text in enumerate(call.get("answers") or []):
            if isinstance(text, str):
                index.setdefault(text, [c, j])
    return index


def _refer(item: Any, answers: dict[str, list[int]]) -> Any:
    """A vote, a refinement or a Generate answer with its raw text replaced by the answer it is (`answer`)."""
    if isinstance(item, dict) and isinstance(item.get("raw"), str) and item["raw"] in answers:
        return {**{k: v for k, v in item.items() if k != "raw"}, "answer": answers[item["raw"]]}
    return item


def _stored_record(record: dict, answers: dict[str, list[int]]) -> dict:
    """A source record as stored: its votes' and its refinement's raw answers by reference."""
    out = dict(record)
    if isinstance(out.get("votes"), list):
        out["votes"] = [_refer(v, answers) for v in out["votes"]]
    if isinstance(out.get("refinement"), dict):
        out["refinement"] = _refer(out["refinement"], answers)
    return out


def _stored_generate(record: dict, answers: dict[str, list[int]]) -> dict:
    """Generate's record as stored: its parsed answers' raw texts by reference."""
    out = dict(record)
    for key in ("audio", "boxes"):
        if isinstance(out.get(key), list):
            out[key] = [_refer(a, answers) for a in out[key]]
    return out


def _resolve(item: Any, calls: list[dict]) -> Any:
    """The inverse of `_refer`: the raw text back from the call's answer (ValueError when there is none)."""
    if not isinstance(item, dict) or "answer" not in item:
        return item
    ref = item["answer"]
    if not (isinstance(ref, list) and len(ref) == 2 and all(type(x) is int and x >= 0 for x in ref)):
        raise ValueError(f"answer reference {str(ref)[:40]} is not [call, answer]")
    c, j = ref
    answers = calls[c].get("answers") if c < len(calls) and isinstance(calls[c], dict) else None
    if not isinstance(answers, list) or j >= len(answers):
        raise ValueError(f"answer reference {ref} names no answer of the trace's calls")
    return {**{k: v for k, v in item.items() if k != "answer"}, "raw": answers[j]}


def _read_record(record: Any, calls: list[dict]) -> Any:
    if not isinstance(record, dict):
        return record
    out = dict(record)
    if isinstance(out.get("votes"), list):
        out["votes"] = [_resolve(v, calls) for v in out["votes"]]
    out["refinement"] = _resolve(out.get("refinement"), calls)
    return out


def _read_generate(record: Any, calls: list[dict]) -> Any:
    if not isinstance(record, dict):
        return record
    out = dict(record)
    for key in ("audio", "boxes"):
        if isinstance(out.get(key), list):
            out[key] = [_resolve(a, calls) for a in out[key]]
    return out


def _stored_update(step: TraceStep, answers: dict[str, list[int]], records: dict[int, dict]) -> dict:
    """A step's update as stored: a source's as a patch of its record, raw answers by reference."""
    u = step.update
    if u.kind == "source":
        record = _stored_record(u.source.model_dump(mode="json"), answers)
        if step.source != u.source.index:  # not the step's own source: stored whole
            return {"kind": "source", "source": record}
        changes = record_patch(records.get(step.source, {}), record)
        records[step.source] = record
        return {"kind": "source", "changes": changes}
    if u.kind == "generate":
        sources = [_stored_record(r.model_dump(mode="json"), answers) for r in u.sources]
        for r in sources:
            records[r["index"]] = r
        stored = {
            **u.model_dump(mode="json"),
            "generate": _stored_generate(u.generate.model_dump(mode="json"), answers),
        }
        return {k: v for k, v in {**stored, "sources": sources}.items() if v is not None}
    return u.model_dump(mode="json")


def to_document(trace: Trace) -> dict:
    """The trace as stored: calls once, per-source steps as patches, raw answers by reference, long
    strings as attachments."""
    data = trace.model_dump(mode="json", exclude={"steps"})
    calls = [c.model_dump(mode="json") for s in trace.steps for c in s.calls]
    answers = _answer_index(calls)
    records: dict[int, dict] = {}  # source -> its stored record as of the step being written
    steps = []
    n = 0
    for step in trace.steps:
        stored = step.model_dump(mode="json", exclude={"calls", "update"})
        steps.append(
            {
                **stored,
                "call_ids": list(range(n, n + len(step.calls))),
                "update": _stored_update(step, answers, records),
            }
        )
        n += len(step.calls)
    final = data["final_state"]
    final["calls"] = []  # they are `calls`
    final["sources"] = [_stored_record(r, answers) for r in final["sources"]]
    if final.get("generate") is not None:
        final["generate"] = _stored_generate(final["generate"], answers)
    attachments: dict[str, str] = {}
    body = intern_strings({**data, "steps": steps, "calls": calls}, attachments)
    return {"schema_version": SCHEMA_VERSION, **body, "attachments": attachments}


def from_document(data: dict) -> Trace:
    """A stored trace (any of READABLE_VERSIONS) as the in-memory Trace.

    The one place that knows the older versions: their steps held what a node wrote as a plain dict
    (version 1: whole; version 2: other channels in `wrote`, a source's record as a patch), read into
    typed updates by `classify_update`, as a live run's are. 3 is what `to_document` writes.
    """
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"schema version {version!r} is not one of {READABLE_VERSIONS}")
    if version == 1:
        return Trace.model_validate(_upgrade_v1(data))
    data = resolve_strings({k: v for k, v in data.items() if k != "attachments"}, data.get("attachments") or {})
    data["schema_version"] = SCHEMA_VERSION  # read into today's shape
    calls = data.pop("calls", [])
    if not isinstance(calls, list):
        raise ValueError("calls is not a list")
    read_step = _read_v2_step if version == 2 else _read_step
    records: dict[int, dict] = {}
    steps = []
    for step in data.get("steps", []):
        if not isinstance(step, dict):
            raise ValueError("a step is not an object")
        step = dict(step)
        step_calls = [calls[i] for i in step.pop("call_ids", [])]
        steps.append({**step, "calls": step_calls, "update": read_step(step, calls, records)})
    data["steps"] = steps
    final = data["final_state"] = {**data["final_state"], "calls": calls}
    if isinstance(final.get("sources"), list):
        final["sources"] = [_read_record(r, calls) for r in final["sources"]]
    final["generate"] = _read_generate(final.get("generate"), calls)
    return _validate_nulls_as_nan(data)


def _validate_nulls_as_nan(data: dict) -> Trace:
    """Trace.model_validate, where null in a field typed as a number reads as NaN.

    The writer stores NaN and infinities as null (`store.finite_json`: JSON has neither), so a run
    whose state held one still reads back; an untyped place (a step's state) keeps the null. Any
    other error is raised as it is.
    """
    for _ in range(MAX_NAN_FIELDS):
        try:
            return Trace.model_validate(data)
        except ValidationError as e:
            errors = e.errors()
            if not all(err["type"] == "float_type" and err["input"] is None for err in errors):
                raise
            try:
                for err in errors:
                    *parents, last = err["loc"]
                    target, tagged = data, None
                    for key in parents:
                        if isinstance(target, dict) and target.get("kind") == key and tagged is not target:
                            tagged = target  # a step update's tag (its kind) in the path, not a field
                            continue
                        target = target[key]
                    if target[last] is not None:
                        raise e
                    target[last] = float("nan")
            except (KeyError, IndexError, TypeError):
                raise e from None  # a location through a union or validator: not a plain field
    return Trace.model_validate(data)


MAX_NAN_FIELDS = 20  # validation rounds; each fixes every null number it reports


def _read_step(step: dict, calls: list[dict], records: dict[int, dict]) -> Any:
    """A version-3 step's update (the stored form `_stored_update` wrote) in its in-memory form."""
    stored = step.pop("update", None)
    if not isinstance(stored, dict):
        raise ValueError(f"step {step.get('index')} has no update object")
    source = step.get("source")
    if stored.get("kind") == "source" and "changes" in stored:
        if not isinstance(source, int):
            raise ValueError(f"step {step.get('index')} patches a record but names no source")
        record = jsonpatch.apply_patch(records.get(source, {}), stored["changes"])
        records[source] = record
        return {"kind": "source", "source": _read_record(record, calls)}
    if stored.get("kind") == "source":
        return {**stored, "source": _read_record(stored.get("source"), calls)}
    if stored.get("kind") == "generate":
        sources = stored.get("sources") or []
        for r in sources if isinstance(sources, list) else []:
            if isinstance(r, dict) and isinstance(r.get("index"), int):
                records[r["index"]] = r
        return {
            **stored,
            "generate": _read_generate(stored.get("generate") or {}, calls),
            "sources": [_read_record(r, calls) for r in sources] if isinstance(sources, list) else sources,
        }
    return stored


def _read_v2_step(step: dict, calls: list[dict], records: dict[int, dict]):
    """A version-2 step: what it wrote (`wrote`, its record patched by `changes`) as a typed update."""
    state = step.pop("wrote", None) or {}
    if not isinstance(state, dict):
        raise ValueError(f"step {step.get('index')}: wrote is not an object")
    state = copy.deepcopy(state)
    changes = step.pop("changes", None)
    if changes is not None and step.get("source") is not None:
        record = jsonpatch.apply_patch(records.get(step["source"], {}), changes)
        records[step["source"]] = record
        state.update(source=record, sources=[record])
    else:
        for r in state.get("sources") or []:
            if isinstance(r, dict) and isinstance(r.get("index"), int):
                records[r["index"]] = r
    return classify_update(state, step.get("source"))


def _upgrade_v1(data: dict) -> dict:
    """A version-1 trace in today's shapes: calls were kept in the records, not in a channel of their own;
    each step held the whole of what it wrote (`state`)."""
    data = copy.deepcopy(data)
    steps = data.get("steps", [])
    for step in steps:
        if isinstance(step, dict):
            state = step.pop("state", None) or {}
            step["update"] = classify_update(state if isinstance(state, dict) else {}, step.get("source"))
    calls = [c for s in steps if isinstance(s, dict) for c in s.get("calls", [])]
    data["final_state"] = {**data["final_state"], "calls": calls}
    return data

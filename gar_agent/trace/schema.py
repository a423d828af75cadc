"""The saved-run schema: the one place that says what a trace contains, and how it is stored.

A trace is one versioned JSON document per run: what ran (graph topology and file hash, prompt
hashes, settings), on what (inputs by path, hash and size), every step in order (node, source,
pass, the model calls with media referenced by hash, what the step wrote, usage, time), and the
final state and result. Everything needed to replay the run without the model is here.

In memory a `Trace` holds each step's calls and the update it wrote, as the graph streamed them.
On disk (schema version 3, `to_document` / `from_document`) it is stored linear in size, as
inspect_ai stores its logs:
- every model call once, in `calls`; a step lists the indices of the calls it made;
- a per-source step stores what it changed in its source record as a JSON Patch (RFC 6902), so
  the votes of pass k are stored once, not again by every later step;
- every string longer than 80 characters (a prompt, an answer) is stored once in `attachments`
  and referenced as `attachment://<hash>`, so a prompt asked N times is stored once;
- the final state's calls are the trace's calls (not stored twice).

Version 3 adds `spec`, the run spec (gar_agent.spec.RunSpec: backend name and options, graph name,
sha256 and source, prompt templates' texts, protocol, settings); its long texts are attachments
like any other string. A trace in an evaluation folder records the spec without the texts (the
folder's spec.json holds them once). The recorded graph source is shown and diffed, never run.
Older documents are read by `from_document` as they are: version 1 (each step storing its whole
source record) and version 2 (no spec: `spec` is None).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import jsonpatch
from pydantic import BaseModel, Field, ValidationError

from gar_agent.result import RunResult
from gar_agent.spec import RunSpec
from gar_agent.state import ModelCall, RunState, Settings, Usage

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
    state: dict = Field(default_factory=dict, description="What the step wrote to the state.")
    usage: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0


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

    def calls(self) -> list[TraceCall]:
        """Every model call in step order."""
        return [c for s in self.steps for c in s.calls]


# --- storage ---------------------------------------------------------------------------------------


_PLAIN = (int, float, bool, type(None))  # values intern_strings passes through without a call (most of a trace)


def intern_strings(value: Any, attachments: dict[str, str]) -> Any:
    """The value with every long string replaced by a reference to its attachment (stored once)."""
    kind = type(value)
    if kind is str:
        if len(value) <= INLINE_LIMIT and not value.startswith(ATTACHMENT):
            return value
        key = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
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


def _record(state: dict, source: int) -> dict | None:
    record = state.get("source")
    if isinstance(record, dict) and record.get("index") == source:
        return record
    return next((r for r in state.get("sources") or [] if isinstance(r, dict) and r.get("index") == source), None)


def to_document(trace: Trace) -> dict:
    """The trace as stored: calls once, per-source steps as patches, long strings as attachments."""
    data = trace.model_dump(mode="json")
    calls: list[dict] = []
    records: dict[int, dict] = {}  # source -> its record as of the step being written
    steps = []
    for step in data.pop("steps"):
        ids = list(range(len(calls), len(calls) + len(step["calls"])))
        calls.extend(step.pop("calls"))
        wrote = {k: v for k, v in step.pop("state").items() if k != "calls"}
        record = _record(wrote, step["source"]) if step["source"] is not None else None
        if record is not None:
            wrote = {k: v for k, v in wrote.items() if k not in ("source", "sources")}
            step["changes"] = record_patch(records.get(step["source"], {}), record)
            records[step["source"]] = record
        else:
            for r in wrote.get("sources") or []:
                if isinstance(r, dict) and isinstance(r.get("index"), int):
                    records[r["index"]] = r
        steps.append({**step, "call_ids": ids, "wrote": wrote})
    data["final_state"]["calls"] = []  # they are `calls`
    attachments: dict[str, str] = {}
    body = intern_strings({**data, "steps": steps, "calls": calls}, attachments)
    return {"schema_version": SCHEMA_VERSION, **body, "attachments": attachments}


def from_document(data: dict) -> Trace:
    """A stored trace (any of READABLE_VERSIONS) as the in-memory Trace.

    The one place that knows the older versions: 1 is upgraded whole (`_upgrade_v1`); 2 is 3 without
    a spec (the field defaults to None); 3 is what `to_document` writes.
    """
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"schema version {version!r} is not one of {READABLE_VERSIONS}")
    if version == 1:
        return Trace.model_validate(_upgrade_v1(data))
    data = resolve_strings({k: v for k, v in data.items() if k != "attachments"}, data.get("attachments") or {})
    data["schema_version"] = SCHEMA_VERSION  # read into today's shape
    calls = data.pop("calls", [])
    records: dict[int, dict] = {}
    steps = []
    for step in data.get("steps", []):
        step = dict(step)
        step_calls = [calls[i] for i in step.pop("call_ids", [])]
        state = copy.deepcopy(step.pop("wrote", {}))
        changes = step.pop("changes", None)
        if changes is not None and step.get("source") is not None:
            record = jsonpatch.apply_patch(records.get(step["source"], {}), changes)
            records[step["source"]] = record
            state.update(source=record, sources=[record])
        else:
            for r in state.get("sources") or []:
                if isinstance(r, dict) and isinstance(r.get("index"), int):
                    records[r["index"]] = r
        steps.append({**step, "calls": step_calls, "state": {**state, "calls": step_calls}})
    data["steps"] = steps
    data["final_state"] = {**data["final_state"], "calls": calls}
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
                    target = data
                    for key in parents:
                        target = target[key]
                    if target[last] is not None:
                        raise e
                    target[last] = float("nan")
            except (KeyError, IndexError, TypeError):
                raise e from None  # a location through a union or validator: not a plain field
    return Trace.model_validate(data)


MAX_NAN_FIELDS = 20  # validation rounds; each fixes every null number it reports


def _upgrade_v1(data: dict) -> dict:
    """A version-1 trace in today's shapes: calls were kept in the records, not in a channel of their own."""
    data = copy.deepcopy(data)
    calls = [c for s in data.get("steps", []) for c in s.get("calls", [])]
    data["final_state"] = {**data["final_state"], "calls": calls}
    return data

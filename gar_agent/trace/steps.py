"""What one step of a run wrote, typed: the update a trace step records.

A node returns a dict of channels; the trace keeps it as one of these models, told apart by `kind`:
- `generate`: Generate's record, the sources it gave, and why it failed (if it did);
- `source`: a source's record as a per-source node (Analyze, Gate, Refine, a researcher's own node in
  the branch) left it;
- `error`: a node that only reported why the run ends;
- `empty`: a node that wrote nothing (its model calls, if any, are the step's `calls`);
- `other`: a researcher's node writing channels none of the above has, kept as JSON so that no run is
  refused a trace.
The calls channel is not part of an update: every call is the step's (`TraceStep.calls`).

`classify_update` is the one place that reads a node's update dict (live, or a step of a version 1 or
2 trace) into these; the CLI views, `gar trace show`, `gar trace diff` and the viewer only read the
typed models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, JsonValue, ValidationError
from pydantic_core import to_jsonable_python

from gar_agent.state import AudioInfo, GenerateRecord, ImageInfo, ModelCall, SourceRecord

GENERATE_CHANNELS = frozenset({"generate", "sources", "error", "image", "audio"})
SOURCE_CHANNELS = frozenset({"source", "sources"})


class _Update(BaseModel):
    def channels(self) -> dict[str, Any]:
        """The channels the step wrote, as JSON (the untyped form traces of schema 1 and 2 held)."""
        return {k: v for k, v in self.model_dump(mode="json", exclude={"kind"}).items() if v is not None}

    def records(self) -> list[SourceRecord]:
        """The source records the step wrote to the run's `sources` (none for most kinds)."""
        return []

    def record(self, source: int | None = None) -> SourceRecord | None:
        """The record of `source` the step left (None: the one record it wrote, if it wrote one)."""
        return None


class GenerateUpdate(_Update):
    """Generate's update: its record (answers, repairs, pairing), the sources it gave, or why it failed."""

    kind: Literal["generate"] = "generate"
    generate: GenerateRecord = Field(default_factory=GenerateRecord)
    sources: list[SourceRecord] = Field(default_factory=list)
    error: str | None = None
    image: ImageInfo | None = Field(None, description="Written when the run started without its inputs (a server).")
    audio: AudioInfo | None = None

    def records(self) -> list[SourceRecord]:
        return self.sources


class SourceUpdate(_Update):
    """A per-source step's update: its source's record as the step left it."""

    kind: Literal["source"] = "source"
    source: SourceRecord

    def channels(self) -> dict[str, Any]:
        record = self.source.model_dump(mode="json")
        return {"source": record, "sources": [record]}  # a branch's node writes both (nodes/common.py)

    def records(self) -> list[SourceRecord]:
        return [self.source]

    def record(self, source: int | None = None) -> SourceRecord | None:
        return self.source if source is None or source == self.source.index else None


class ErrorUpdate(_Update):
    """A node that only said why the run ends."""

    kind: Literal["error"] = "error"
    error: str


class EmptyUpdate(_Update):
    """A node that wrote nothing (beyond its model calls)."""

    kind: Literal["empty"] = "empty"


class OtherUpdate(_Update):
    """A researcher's node writing channels none of the other kinds has: what it wrote, as JSON."""

    kind: Literal["other"] = "other"
    wrote: dict[str, JsonValue] = Field(default_factory=dict)

    def channels(self) -> dict[str, Any]:
        return dict(self.wrote)

    def records(self) -> list[SourceRecord]:
        found = self.wrote.get("sources")
        return [r for r in map(_source_record, found) if r is not None] if isinstance(found, list) else []

    def record(self, source: int | None = None) -> SourceRecord | None:
        candidates = [_source_record(self.wrote.get("source")), *self.records()]
        return next((r for r in candidates if r is not None and (source is None or r.index == source)), None)


StepUpdate = Annotated[
    Union[GenerateUpdate, SourceUpdate, ErrorUpdate, EmptyUpdate, OtherUpdate], Field(discriminator="kind")
]


def _source_record(value: Any) -> SourceRecord | None:
    if not isinstance(value, dict):
        return None
    try:
        return SourceRecord.model_validate(value)
    except ValidationError:
        return None


def jsonable(value: Any) -> Any:
    """A node's value as JSON (models dumped; what JSON cannot hold, as its text)."""
    return to_jsonable_python(value, fallback=str)


def classify_update(update: dict[str, Any], source: int | None = None) -> StepUpdate:
    """A node's update dict (models or their JSON; the calls channel is left out) as a typed update.

    `source`: the step's source, when known; the record of that source is the one a source update keeps.
    Anything that does not fit a kind exactly (extra channels, a record that does not validate) is an
    `OtherUpdate`, so what the node wrote is never lost.
    """
    channels = {str(k): jsonable(v) for k, v in update.items() if k != "calls"}
    if not channels:
        return EmptyUpdate()
    keys = set(channels)
    if "generate" in keys and keys <= GENERATE_CHANNELS:
        try:
            return GenerateUpdate.model_validate(channels)
        except ValidationError:
            pass
    elif keys <= SOURCE_CHANNELS:
        record = _one_record(channels, source)
        if record is not None:
            return SourceUpdate(source=record)
    elif keys == {"error"} and isinstance(channels["error"], str):
        return ErrorUpdate(error=channels["error"])
    return OtherUpdate(wrote=channels)


def live_update(step: Any) -> tuple[StepUpdate, list[ModelCall]]:
    """A streamed step (gar_agent.result.Step) as the typed update and the calls a trace step holds."""
    calls = step.update.get("calls") or []
    return classify_update(step.update), [c if isinstance(c, ModelCall) else ModelCall.model_validate(c) for c in calls]


def _one_record(channels: dict[str, Any], source: int | None) -> SourceRecord | None:
    """The record a per-source step wrote: `source`, and `sources` holding that record alone (or either)."""
    listed = channels.get("sources")
    if listed is not None and (not isinstance(listed, list) or len(listed) != 1):
        return None
    own = channels.get("source")
    if own is not None and listed is not None and listed[0] != own:
        return None
    record = _source_record(own if own is not None else listed[0] if listed else None)
    if record is None or (source is not None and record.index != source):
        return None
    return record

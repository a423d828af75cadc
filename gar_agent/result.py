"""The result of a run (what `gar run --json` prints, what eval, views and overlays read), typed.

`RunResult` is read off the final state once; its JSON is the result document users script
against (`result.json`, `samples/<id>.json`'s `result`, a trace's `result`). A `RunOutcome` is
what running a clip gives back: the final state, its `RunResult` and the steps streamed on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue, model_validator

from gar_agent.state import Analysis, Box, RunState, SourceRecord, Usage

SourceStatus = Literal["refined", "skipped", "not_refined", "not_analysed", "failed"]
STATUS_TEXT: dict[str, str] = {
    "refined": "refined",
    "skipped": "skipped by the gate",
    "not_refined": "gated, not refined",
    "not_analysed": "not analysed",
    "failed": "failed",
}


class ResultImage(BaseModel):
    path: str
    width: int
    height: int


class ResultAudio(BaseModel):
    path: str
    sample_rate: int
    duration_s: float


class ResultSettings(BaseModel):
    sources: int
    n_votes: int
    votes_per_call: int
    tau_av: float
    tau_audio: float
    graph: str
    backend: str
    protocol: str = "gar"


class ResultGate(BaseModel):
    refine: bool
    reasons: list[str] = Field(default_factory=list)


class ResultSource(BaseModel):
    """One sounding object: its boxes (original-image pixels), sound, analysis and what happened to it."""

    box: Box
    initial_box: Box
    description: JsonValue = ""  # text; any JSON value where the reference duet scripts keep one
    audio_class: str = "unknown"
    audio_confidence: float = 0.0
    analysis: Analysis | None = None
    gate: ResultGate | None = None
    refined: bool = False
    refined_description: str | None = None
    status: SourceStatus = Field(
        "not_analysed",
        description="refined | skipped (by the gate) | not_refined (gated, no Refine ran) | not_analysed | failed",
    )

    @model_validator(mode="before")
    @classmethod
    def _status_of_older_documents(cls, data):
        # results written before `status` existed: derive it from what they hold
        if isinstance(data, dict) and "status" not in data:
            gate = data.get("gate") or None
            status = "refined" if data.get("refined") else "not_analysed" if gate is None else "not_refined"
            if gate is not None and not gate.get("refine"):
                status = "skipped"
            data = {**data, "status": status}
        return data


class RunResult(BaseModel):
    """A run's result document."""

    image: ResultImage
    audio: ResultAudio
    settings: ResultSettings
    sources: list[ResultSource]
    usage: Usage
    error: str | None = None

    @property
    def refined(self) -> int:
        """Sources that went through Refine."""
        return sum(s.refined for s in self.sources)

    @property
    def skipped(self) -> int:
        """Sources whose refinement the gate skipped (a graph without a gate skips none)."""
        return sum(s.status == "skipped" for s in self.sources)


def source_status(src: SourceRecord) -> SourceStatus:
    """What happened to a source: failed, refined, skipped by the gate, gated but not refined, not analysed."""
    if src.error:
        return "failed"
    if src.refinement is not None:
        return "refined"
    if src.gate is None:
        return "not_analysed"
    return "not_refined" if src.gate.refine else "skipped"


def run_usage(state: RunState) -> Usage:
    """Sum of every model call's usage in the run."""
    return sum((c.usage for c in state.calls), Usage())


def run_error(state: RunState) -> str | None:
    """Why the run failed: Generate's error, else the first source's."""
    return state.error or next((s.error for s in state.sources if s.error), None)


def run_result(state: RunState) -> RunResult:
    """The run's result, read off the final state."""
    s = state.settings
    image, audio = state.image, state.audio
    if image is None or audio is None:  # the run fills both from its media before the graph starts
        raise ValueError("run_result needs a run state with its image and audio")
    sources = []
    for src in state.sources:
        a, refinement = src.analysis, src.refinement
        sources.append(
            ResultSource(
                box=src.box,
                initial_box=src.initial_box,
                description=src.description,
                audio_class=src.audio_class,
                audio_confidence=src.audio_confidence,
                analysis=a,
                gate=None if src.gate is None else ResultGate(refine=src.gate.refine, reasons=src.gate.reasons),
                refined=refinement is not None,
                refined_description=(refinement.refined_description or None) if refinement else None,
                status=source_status(src),
            )
        )
    return RunResult(
        image=ResultImage(path=image.path, width=image.width, height=image.height),
        audio=ResultAudio(path=audio.path, sample_rate=audio.sample_rate, duration_s=audio.duration_s),
        settings=ResultSettings(
            sources=s.sources,
            n_votes=s.n_votes,
            votes_per_call=s.votes_per_pass,
            tau_av=s.tau_av,
            tau_audio=s.tau_audio,
            graph=s.graph,
            backend=s.backend,
            protocol=s.protocol,
        ),
        sources=sources,
        usage=run_usage(state),
        error=run_error(state),
    )


@dataclass
class Step:
    """One node's execution as the graph streamed it: which node, which branch, what it wrote."""

    node: str
    namespace: tuple[str, ...]
    update: dict[str, Any]
    elapsed_s: float


@dataclass
class RunOutcome:
    """A finished run: its final state, the result document, and every step in order."""

    state: RunState
    result: RunResult
    steps: list[Step] = field(default_factory=list)
    thread_id: str = ""
    wall_s: float = 0.0

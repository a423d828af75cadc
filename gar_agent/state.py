"""The typed state of a GAR run: settings, inputs, and per source every answer and decision.

The state is the single source of truth for a run: the trace, the terminal view, replay and the
result JSON are all read from it. Everything here is JSON-native pydantic, so checkpoints, traces
and forks round-trip without custom serialisers.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from gar_agent.errors import UserError

if TYPE_CHECKING:
    from gar_agent.prompts import PromptSet

Box = list[int]
"""A box `[x1, y1, x2, y2]` in integer pixels of the original image (x1 < x2, y1 < y2)."""

Stage = Literal["generate", "audio", "analyze", "refine"]
"""The model calls of the method: Generate's two calls (boxes; audio class), Analyze, Refine."""


class SettingsError(UserError):
    """A setting override that names no setting or gives it a value out of its range."""


class Settings(BaseModel):
    """What the user chose for this run; routers read their thresholds from here (pure routers)."""

    model_config = ConfigDict(frozen=True)

    sources: int = Field(1, ge=1, le=8, description="K, the number of sounding objects to find.")
    n_votes: int = Field(5, ge=1, le=64, description="N, analysis passes (votes) per source.")
    votes_per_call: int | None = Field(
        None, ge=1, le=64, description="Votes asked of one model call (None: all N at once)."
    )
    tau_av: float = Field(0.5, ge=0.0, le=1.0, description="Gate threshold on mean av_consistency.")
    tau_audio: float = Field(0.75, ge=0.0, le=1.0, description="Gate threshold on audio confidence.")
    vote_temperature: float = Field(0.4, ge=0.0, description="Sampling temperature of the votes.")
    vote_top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling of the votes.")
    max_repairs: int = Field(1, ge=0, le=3, description="Repair attempts for a Generate answer.")
    graph: str = Field("gar", description="Name of the graph topology that ran.")
    backend: str = Field("", description="The chat model that answered, as given on the CLI.")
    protocol: str = Field(
        "gar",
        description="A registered protocol (gar_agent.registry.PROTOCOLS). gar: the project's prompts and rules; "
        "reference: the released scripts exactly.",
    )
    max_new_tokens: int = Field(512, ge=1, description="Most tokens one answer may have (reference: 256).")

    @property
    def votes_per_pass(self) -> int:
        """Votes one Analyze pass asks of one model call: --votes-per-call, or all N at once.

        Not --batch-size, which batches the calls of several samples into one generate of a local model.
        """
        return min(self.votes_per_call or self.n_votes, self.n_votes)

    def with_overrides(self, **overrides: object) -> Settings:
        """A copy with some settings changed (None: keep), validated as a new run's settings are.

        `model_copy(update=...)` validates nothing: a misspelt name (`tau_avv`) would be dropped in
        silence and `n_votes="many"` kept, so a replay would not be the experiment asked for.
        """
        updates = {k: v for k, v in overrides.items() if v is not None}
        names = type(self).model_fields
        unknown = sorted(set(updates) - set(names))
        if unknown:
            raise SettingsError(f"unknown setting {', '.join(map(repr, unknown))}: give one of {', '.join(names)}")
        try:
            return type(self).model_validate({**self.model_dump(), **updates})
        except ValidationError as e:
            first = e.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            raise SettingsError(f"setting {name}={first.get('input')!r}: {first['msg']}") from None

    @property
    def batch(self) -> int:
        """The old name of `votes_per_pass` (kept for graph files and notebooks that read it)."""
        return self.votes_per_pass

    @classmethod
    def from_options(
        cls,
        prompts: PromptSet,
        protocol: str,
        backend: str,
        model: str | None,
        *,
        graph: str,
        sources: int,
        n_votes: int,
        votes_per_call: int | None,
        tau_av: float,
        tau_audio: float,
    ) -> Settings:
        """A run's Settings from a command's options: the one place gar run, gar track, gar eval run and
        the notebook API build them, so each records the same fields the same way. PromptError if the
        prompt set and protocol do not belong together; the protocol fixes its own decoding."""
        from gar_agent.prompts import protocol_settings  # prompts is a leaf; imported when asked for

        return cls(
            sources=sources,
            n_votes=n_votes,
            votes_per_call=votes_per_call,
            tau_av=tau_av,
            tau_audio=tau_audio,
            graph=graph,
            backend=backend if not model else f"{backend} --model {model}",
            **protocol_settings(prompts, protocol, sources),
        )


class ImageInfo(BaseModel):
    """The input frame and the coordinate frame the model answers in."""

    path: str
    width: int
    height: int
    sha256: str = ""
    model_width: int = Field(0, description="Width of the image as the model sees it (0: same).")
    model_height: int = Field(0, description="Height of the image as the model sees it (0: same).")

    @property
    def frame(self) -> tuple[int, int]:
        """(width, height) of the model's coordinate frame."""
        return (self.model_width or self.width, self.model_height or self.height)


class AudioInfo(BaseModel):
    """The input audio after decoding to 16 kHz mono and windowing."""

    path: str
    sample_rate: int
    duration_s: float
    original_duration_s: float
    window_s: tuple[float, float] | None = Field(None, description="Start/end kept when cut.")
    sha256: str = ""


class Usage(BaseModel):
    """Cost of model calls."""

    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    wall_s: float = 0.0
    cached_input_tokens: int = Field(
        0, description="Of input_tokens, those read from a cache (local prefix KV cache, a server's prompt cache)."
    )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            model_calls=self.model_calls + other.model_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            wall_s=round(self.wall_s + other.wall_s, 6),
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
        )


class ModelCall(BaseModel):
    """One request to the chat model and everything that came back."""

    stage: Stage
    source: int | None = Field(None, description="Source index; None for run-level calls.")
    template: str = Field(description="Prompt template file the text was rendered from.")
    prompt: str = Field(description="The rendered text sent with the media.")
    system: str | None = Field(None, description="The system message sent before it, if any.")
    media: list[str] = Field(default_factory=list, description="'image', 'audio': what was attached.")
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    answers: list[str] = Field(default_factory=list, description="Raw answer texts, in order.")
    usage: Usage = Field(default_factory=Usage)
    error: str | None = Field(None, description="The model raised: its message.")
    server: str | None = Field(None, description="Which server answered (a served backend), if it says.")
    attempts: int | None = Field(None, description="Attempts the answer took (retries + 1), if the model says.")


class AnchorVote(BaseModel):
    """A visible cause of the sound and the visual evidence for it."""

    anchor: str
    score: float


class VoteAnswer(BaseModel):
    """One analysis pass, validated."""

    av_consistency: float
    keep: bool
    role_tags: list[str] = Field(default_factory=list)
    anchor_votes: list[AnchorVote] = Field(default_factory=list)


class Vote(BaseModel):
    """One analysis pass as answered: raw text and parsed value, or why it was dropped."""

    index: int
    raw: str
    parsed: VoteAnswer | None = None
    error: str | None = None


class Analysis(BaseModel):
    """The aggregate of a source's votes (METHOD: Stage 2 aggregation)."""

    av_consistency: float
    keep: bool
    role_tags: list[str]
    anchor_votes: list[AnchorVote]
    n_votes: int
    n_parsed: int


class GateDecision(BaseModel):
    """The gate's inputs and decision: skip refinement iff keep and both thresholds pass."""

    keep: bool
    av_consistency: float
    audio_confidence: float
    tau_av: float
    tau_audio: float
    refine: bool
    reasons: list[str] = Field(default_factory=list, description="Which conditions sent it to Refine.")


class RefineOps(BaseModel):
    """A conservative edit of the previous box, as the model proposed it."""

    type: Literal["delta", "expand", "shrink", "recenter"]
    dx: float = 0
    dy: float = 0
    dl: float = 0
    dr: float = 0
    dt: float = 0
    db: float = 0
    amount: float = 0
    target: list[float] | None = None


class RefineAnswer(BaseModel):
    """Refine's answer, validated; bbox/ops are in the model's coordinate frame."""

    bbox: list[float] | None = None
    changed: bool = True
    ops: RefineOps | None = None
    refined_description: str = ""
    ops_error: str | None = Field(None, description="Why a malformed 'ops' was ignored (the bbox still applies).")


class Refinement(BaseModel):
    """What Refine asked, what came back, and how the box moved (and was clamped)."""

    raw: str | None = None
    parsed: RefineAnswer | None = None
    error: str | None = None
    previous_box: Box
    box: Box
    max_delta: int
    applied: Literal["ops", "bbox", "ops+bbox", "unchanged", "not_changed", "parse_error"]
    clamped: bool = Field(False, description="Whether the clamp to +-max_delta cut the move.")
    refined_description: str = Field("", description="The model's description of the refined source.")


class SourceRecord(BaseModel):
    """Everything about one sounding object, from Generate to the final box."""

    index: int
    initial_box: Box
    box: Box = Field(description="The current box: initial, then refined.")
    description: JsonValue = Field(
        "", description="Generate's description: text; any JSON value where the reference duet scripts keep one."
    )
    audio_class: str = "unknown"
    audio_confidence: float = 0.0
    votes: list[Vote] = Field(default_factory=list)
    analysis: Analysis | None = None
    gate: GateDecision | None = None
    refinement: Refinement | None = None
    error: str | None = None


def as_text(value: JsonValue) -> str:
    """A JSON value for display: a string as it is, anything else as JSON (`null`, `3`)."""
    return value if isinstance(value, str) else json.dumps(value)


class ParsedAnswer(BaseModel):
    """A Generate answer: raw text and its parsed fields, or the parse error."""

    raw: str
    value: dict | None = None
    error: str | None = None


class GenerateRecord(BaseModel):
    """Stage 1: the audio call, the box call, repairs, and how boxes were paired with sounds."""

    audio: list[ParsedAnswer] = Field(default_factory=list, description="Audio answer (+ repair).")
    boxes: list[ParsedAnswer] = Field(default_factory=list, description="Box answer (+ repair).")
    pairing: str = Field(
        "prompted",
        description="How box i goes with sound i: 'prompted' (asked by name) or list order (reference).",
    )


def _models(kind: type[BaseModel], items) -> list:
    """A reducer's operand as models: a node hands models, but an update over LangGraph's server API
    (`threads.update_state`, Studio's state editor) or a checkpoint written by one hands their JSON
    form (dicts), and a single record may come without its list."""
    if items is None:
        return []
    if isinstance(items, (BaseModel, dict)):
        items = [items]
    return [item if isinstance(item, kind) else kind.model_validate(item) for item in items]


def append_calls(left: list[ModelCall] | None, right: list[ModelCall] | None) -> list[ModelCall]:
    """Reducer of the calls channel: new calls are appended, never rewritten (each stored once)."""
    return [*_models(ModelCall, left), *_models(ModelCall, right)]


def merge_sources(left: list[SourceRecord] | None, right: list[SourceRecord] | None) -> list[SourceRecord]:
    """Reducer joining per-source branches: a record replaces the one with its index."""
    merged = {s.index: s for s in _models(SourceRecord, left)}
    merged.update({s.index: s for s in _models(SourceRecord, right)})
    return [merged[i] for i in sorted(merged)]


class RunState(BaseModel):
    """The run: inputs and settings, Generate's record, and one record per source."""

    settings: Settings = Field(default_factory=Settings)
    image: ImageInfo | None = Field(None, description="The frame; filled from the run's media when not given.")
    audio: AudioInfo | None = Field(None, description="The audio; filled from the run's media when not given.")
    generate: GenerateRecord | None = None
    sources: Annotated[list[SourceRecord], merge_sources] = Field(default_factory=list)
    calls: Annotated[list[ModelCall], append_calls] = Field(
        default_factory=list, description="Every model call of the run, in the order they finished."
    )
    error: str | None = Field(None, description="Why the run ended early, if it did.")

    @field_validator("sources", "calls", mode="before")
    @classmethod
    def _none_is_empty(cls, v):  # LangGraph may hand None for an unset reducer channel
        return v or []

    def calls_of(self, source: int | None) -> list[ModelCall]:
        """The calls of one source (None: Generate's run-level calls), in order."""
        return [c for c in self.calls if c.source == source]


class SourceState(BaseModel):
    """One source's branch after the fan-out: it refines `source` and reports it to `sources`."""

    settings: Settings
    image: ImageInfo
    audio: AudioInfo
    source: SourceRecord
    peers: list[SourceRecord] = Field(
        default_factory=list, description="The other sources as Generate left them (duets and beyond)."
    )
    calls: Annotated[list[ModelCall], append_calls] = Field(
        default_factory=list, description="This branch's model calls (handed to the run's channel)."
    )

    @field_validator("calls", mode="before")
    @classmethod
    def _no_calls_yet(cls, v):
        return v or []


class SourceOutput(BaseModel):
    """What a source branch hands back to the run (joined by `merge_sources`, calls appended)."""

    sources: Annotated[list[SourceRecord], merge_sources] = Field(default_factory=list)
    calls: Annotated[list[ModelCall], append_calls] = Field(default_factory=list)

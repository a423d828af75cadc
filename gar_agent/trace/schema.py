"""The saved-run schema: the one place that says what a trace contains.

A trace is one versioned JSON document per run: what ran (graph topology and file hash, prompt
hashes, settings), on what (inputs by path, hash and size), every step in order (node, source,
pass, the model calls with media referenced by hash, the state the step wrote, usage, time), and
the final state and result. Everything needed to replay the run without the model is here.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gar_agent.state import ModelCall, RunState, Settings, Usage

SCHEMA_VERSION = 1


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
    result: dict
    wall_s: float = 0.0

    def calls(self) -> list[TraceCall]:
        """Every model call in step order."""
        return [c for s in self.steps for c in s.calls]

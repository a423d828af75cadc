"""The one run path with its record: run a clip (`runner.run_clip`) and write its trace.

`gar run`, `gar eval`, `gar replay`, `gar fork` and `gar track` all call `run_and_record`; what
differs between them is what they pass: a model that answers from a recording, a start state, an
edit after Generate, the parent run and the steps a fork inherits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from gar_agent.media import Media
from gar_agent.prompts import PromptSet
from gar_agent.runner import RunOutcome, Step, arun_clip, run_clip
from gar_agent.spec import RunSpec
from gar_agent.state import RunState, Settings
from gar_agent.topology import Topology
from gar_agent.trace.record import build_trace, input_files
from gar_agent.trace.schema import Fork, InputFile, TraceStep
from gar_agent.trace.store import write_trace


@dataclass
class Lineage:
    """How a run relates to a recorded one (replay and fork), and what its trace inherits."""

    parent: str | None = None
    fork: Fork | None = None
    prefix: list[TraceStep] = field(default_factory=list)  # the parent's steps a fork starts after
    backend: str | None = None  # how the trace names the model ("replay of <run>")


@dataclass
class Recorded:
    """A finished run and where its trace was written."""

    outcome: RunOutcome
    trace_path: Path | None  # None: asked not to write one (a gate sweep's what-if replays)


def run_and_record(
    media: Media,
    settings: Settings,
    model: BaseChatModel,
    *,
    topology: Topology,
    prompts: PromptSet,
    trace_dir: str | Path | None,
    checkpointer=None,
    thread_id: str | None = None,
    on_step: Callable[[Step], None] | None = None,
    state: RunState | None = None,
    after_generate=None,
    inputs: dict[str, InputFile] | None = None,
    lineage: Lineage | None = None,
    embed_media: bool = False,
    spec: RunSpec | None = None,
) -> Recorded:
    """Run one clip through a topology and write its trace (inputs, steps, calls once, result) to trace_dir.

    `spec` is the command's run spec (gar_agent.spec), built once by the command and recorded in the trace.
    """
    outcome = run_clip(
        media,
        settings,
        model,
        topology=topology,
        prompts=prompts,
        checkpointer=checkpointer,
        thread_id=thread_id,
        on_step=on_step,
        state=state,
        after_generate=after_generate,
    )
    return _record(outcome, media, settings, topology, prompts, trace_dir, inputs, lineage, embed_media, spec)


async def arun_and_record(
    media: Media,
    settings: Settings,
    model: BaseChatModel,
    *,
    topology: Topology,
    prompts: PromptSet,
    trace_dir: str | Path | None,
    thread_id: str | None = None,
    spec: RunSpec | None = None,
) -> Recorded:
    """`run_and_record` for a whole fresh run on the event loop (`runner.arun_clip`), as `gar eval` makes them."""
    outcome = await arun_clip(media, settings, model, topology=topology, prompts=prompts, thread_id=thread_id)
    return _record(outcome, media, settings, topology, prompts, trace_dir, spec=spec)


def _record(
    outcome: RunOutcome,
    media: Media,
    settings: Settings,
    topology: Topology,
    prompts: PromptSet,
    trace_dir: str | Path | None,
    inputs: dict[str, InputFile] | None = None,
    lineage: Lineage | None = None,
    embed_media: bool = False,
    spec: RunSpec | None = None,
) -> Recorded:
    """Write a finished run's trace (unless trace_dir is None)."""
    lineage = lineage or Lineage()
    if trace_dir is None:
        return Recorded(outcome, None)
    trace = build_trace(
        outcome,
        media,
        topology,
        prompts,
        backend=lineage.backend or settings.backend,
        parent=lineage.parent,
        fork=lineage.fork,
        prefix=lineage.prefix,
        inputs=inputs or input_files(media),
        spec=spec,
    )
    return Recorded(outcome, write_trace(trace, trace_dir, embed_media))

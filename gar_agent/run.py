"""The one run path: run a clip, and run it and write its trace. Written once, async; thin sync wrappers.

`arun_clip` is the one place a clip runs: a fresh run, a replay (from a recorded start state, with a
model that answers from the recording), a fork (an edit of the state after Generate), `gar track`
(which may stop after Generate) and every sample of `gar eval` all go through it.
`arun_and_record` adds the trace. `gar run`, `gar eval`, `gar replay`, `gar fork` and `gar track`
differ only in what they pass: a model that answers from a recording, a start state, an edit after
Generate, the parent run and the steps a fork inherits.

`run_clip` and `run_and_record` are the same coroutines run to completion on an event loop
(gar_agent/loop.py: the model's own loop, else this process's), so the sync API, `gar eval` and a
notebook's `await` take one path. Our nodes have an async form and run on the loop; a researcher's
plain-function node runs in a worker thread there (LangGraph does this), unchanged. A sync-only
checkpointer (SQLite, Postgres) is used through threads (gar_agent/checkpoints.py `for_async`).
Calling a sync entry point from a coroutine on that loop raises LoopReentry: await the async one.

"Record", one meaning per name: to record a run is to write its trace (`run_and_record`, a
`TracedRun`); a recording is such a trace, which replay answers from; `SourceRecord` and
`GenerateRecord` are entries of the run's state; a `ModelCall` is one call's entry in its calls.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from gar_agent.checkpoints import for_async, memory_saver
from gar_agent.context import GarContext
from gar_agent.loop import run_sync
from gar_agent.media import Media
from gar_agent.nodes.generate import initial_state
from gar_agent.prompts import PromptSet
from gar_agent.record import build_trace, input_files
from gar_agent.result import RunOutcome, Step, run_result
from gar_agent.spec import RunSpec
from gar_agent.state import RunState, Settings
from gar_agent.topology import Topology, load_topology
from gar_agent.trace.schema import Fork, InputFile, TraceStep
from gar_agent.trace.store import write_trace

__all__ = [
    "STOP",
    "Lineage",
    "RunOutcome",
    "Step",
    "TracedRun",
    "Recorded",
    "arun_and_record",
    "arun_clip",
    "astream_run",
    "run_and_record",
    "run_clip",
    "stream_run",
]

STOP = "stop"
"""What `after_generate` returns to end a run once Generate has run."""

AfterGenerate = Callable[[RunState], "dict | str | None | Awaitable[dict | str | None]"]
"""Asked once Generate has run: None runs on, a dict edits the state there, STOP ends the run (sync or async)."""


@dataclass
class Lineage:
    """How a run relates to a recorded one (replay and fork), and what its trace inherits."""

    parent: str | None = None
    fork: Fork | None = None
    prefix: list[TraceStep] = field(default_factory=list)  # the parent's steps a fork starts after
    backend: str | None = None  # how the trace names the model ("replay of <run>")


@dataclass
class TracedRun:
    """A finished run and where its trace was written."""

    outcome: RunOutcome
    trace_path: Path | None  # None: asked not to write one (a gate sweep's what-if replays)


Recorded = TracedRun  # the name before "record" kept one meaning (writing a run's trace)


def _start(media, settings, model, topology, prompts, thread_id, state):
    """What every run begins with: the topology, the context, the LangGraph config and the start state."""
    topology = topology or load_topology(settings.graph)
    context = GarContext(model=model, media=media, prompts=prompts or PromptSet())
    config = {"configurable": {"thread_id": thread_id or uuid.uuid4().hex}}
    return topology, context, config, state or initial_state(media, settings, model)


async def arun_clip(
    media: Media,
    settings: Settings,
    model: BaseChatModel,
    *,
    topology: Topology | None = None,
    prompts: PromptSet | None = None,
    checkpointer=None,
    thread_id: str | None = None,
    on_step: Callable[[Step], None] | None = None,
    state: RunState | None = None,
    after_generate: AfterGenerate | None = None,
) -> RunOutcome:
    """Invoke the graph on one clip (LangGraph's async API) and return the final state and result.

    `state` replaces the initial state built from `media` (replay starts from the recorded one).
    `after_generate(state)` (a function or a coroutine function) is asked once Generate has run:
    None runs on, a dict of updates edits the state there (a fork: `aupdate_state(...,
    as_node="generate")` on the checkpoint history), STOP ends the run after Generate.
    `on_step` is called on the event loop, as each step streams: it should be quick.
    """
    topology, context, config, state = _start(media, settings, model, topology, prompts, thread_id, state)
    saver = for_async(checkpointer)
    if after_generate is None or "generate" not in topology.builder.nodes:
        return await astream_run(topology.compile(checkpointer=saver), state, config, context, on_step)
    saver = saver or memory_saver()
    paused = topology.builder.compile(checkpointer=saver, interrupt_after=["generate"])
    first = await astream_run(paused, state, config, context, on_step)
    decision = after_generate(first.state)
    if inspect.isawaitable(decision):
        decision = await decision
    if decision == STOP:
        return first
    graph = topology.compile(checkpointer=saver)
    if isinstance(decision, dict):
        snapshot = await paused.aget_state(config)
        config = await graph.aupdate_state(snapshot.config, decision, as_node="generate")
    rest = await astream_run(graph, None, config, context, on_step)
    rest.steps[:0] = first.steps
    rest.thread_id, rest.wall_s = first.thread_id, round(first.wall_s + rest.wall_s, 6)
    return rest


def run_clip(
    media: Media,
    settings: Settings,
    model: BaseChatModel,
    *,
    topology: Topology | None = None,
    prompts: PromptSet | None = None,
    checkpointer=None,
    thread_id: str | None = None,
    on_step: Callable[[Step], None] | None = None,
    state: RunState | None = None,
    after_generate: AfterGenerate | None = None,
) -> RunOutcome:
    """`arun_clip`, waited for here (on the model's loop, else this process's: gar_agent/loop.py)."""
    run = arun_clip(
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
    return run_sync(run, model)


def _stream_options(context: GarContext) -> dict:
    return {"context": context, "stream_mode": ["updates", "values"], "subgraphs": True}


class _Steps:
    """Collects a streamed run: each node's update as a Step (timed), and the final values."""

    def __init__(self, config: dict, on_step: Callable[[Step], None] | None) -> None:
        self.config, self.on_step = config, on_step
        self.steps: list[Step] = []
        self.final: dict | None = None
        self.start = self.last = time.perf_counter()

    def take(self, namespace: tuple[str, ...], mode: str, chunk: dict) -> None:
        if mode == "values":
            if not namespace:
                self.final = chunk
            return
        now = time.perf_counter()
        for node, update in chunk.items():
            if node.startswith("__"):
                continue
            # a node that wrote nothing (returned None or {}) streams as None: it ran, so it is a step
            step = Step(node=node, namespace=namespace, update=update or {}, elapsed_s=round(now - self.last, 6))
            self.steps.append(step)
            if self.on_step:
                self.on_step(step)
        self.last = now

    def outcome(self) -> RunOutcome:
        end_state = RunState.model_validate(self.final)
        return RunOutcome(
            state=end_state,
            result=run_result(end_state),
            steps=self.steps,
            thread_id=self.config["configurable"]["thread_id"],
            wall_s=round(time.perf_counter() - self.start, 6),
        )


async def astream_run(graph, graph_input, config: dict, context: GarContext, on_step=None) -> RunOutcome:
    """Stream a compiled graph (from an input, or from a checkpoint when the input is None)."""
    steps = _Steps(config, on_step)
    async for part in graph.astream(graph_input, config, **_stream_options(context)):
        steps.take(*part)
    return steps.outcome()


def stream_run(graph, graph_input, config: dict, context: GarContext, on_step=None) -> RunOutcome:
    """`astream_run`, waited for here. A sync-only checkpointer compiled into `graph` is not
    wrapped here (the caller compiled it): compile with `for_async(saver)` for SQLite or Postgres."""
    return run_sync(astream_run(graph, graph_input, config, context, on_step), getattr(context, "model", None))


async def arun_and_record(
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
    after_generate: AfterGenerate | None = None,
    inputs: dict[str, InputFile] | None = None,
    lineage: Lineage | None = None,
    embed_media: bool = False,
    spec: RunSpec | None = None,
) -> TracedRun:
    """Run one clip through a topology and write its trace (inputs, steps, calls once, result) to trace_dir.

    `spec` is the command's run spec (gar_agent.spec), built once by the command and recorded in the trace.
    """
    outcome = await arun_clip(
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
    return _write_trace(outcome, media, settings, topology, prompts, trace_dir, inputs, lineage, embed_media, spec)


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
    after_generate: AfterGenerate | None = None,
    inputs: dict[str, InputFile] | None = None,
    lineage: Lineage | None = None,
    embed_media: bool = False,
    spec: RunSpec | None = None,
) -> TracedRun:
    """`arun_and_record`, waited for here (on the model's loop, else this process's: gar_agent/loop.py)."""
    run = arun_and_record(
        media,
        settings,
        model,
        topology=topology,
        prompts=prompts,
        trace_dir=trace_dir,
        checkpointer=checkpointer,
        thread_id=thread_id,
        on_step=on_step,
        state=state,
        after_generate=after_generate,
        inputs=inputs,
        lineage=lineage,
        embed_media=embed_media,
        spec=spec,
    )
    return run_sync(run, model)


def _write_trace(
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
) -> TracedRun:
    """Write a finished run's trace (unless trace_dir is None)."""
    lineage = lineage or Lineage()
    if trace_dir is None:
        return TracedRun(outcome, None)
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
    return TracedRun(outcome, write_trace(trace, trace_dir, embed_media))

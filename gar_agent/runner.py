"""Run one clip: build the state, invoke the graph with the model in its context, collect steps.

`run_clip` is the one place a clip runs: a fresh run, a replay (from a recorded start state, with a
model that answers from the recording), a fork (an edit of the state after Generate) and `gar track`
(which may stop after Generate) all go through it. `gar_agent.run.run_and_record` adds the trace.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from gar_agent.context import GarContext
from gar_agent.media import Media
from gar_agent.nodes.generate import initial_state
from gar_agent.prompts import PromptSet
from gar_agent.result import RunResult, run_result
from gar_agent.state import RunState, Settings
from gar_agent.topology import Topology, load_topology
from gar_agent.trace.checkpoints import memory_saver

STOP = "stop"
"""What `after_generate` returns to end a run once Generate has run."""


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


def _start(media, settings, model, topology, prompts, thread_id, state):
    """What every run begins with: the topology, the context, the LangGraph config and the start state."""
    topology = topology or load_topology(settings.graph)
    context = GarContext(model=model, media=media, prompts=prompts or PromptSet())
    config = {"configurable": {"thread_id": thread_id or uuid.uuid4().hex}}
    return topology, context, config, state or initial_state(media, settings, model)


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
    after_generate: Callable[[RunState], dict | str | None] | None = None,
) -> RunOutcome:
    """Invoke the graph on one clip and return the final state and result.

    `state` replaces the initial state built from `media` (replay starts from the recorded one).
    `after_generate(state)` is asked once Generate has run: None runs on, a dict of updates edits
    the state there (a fork: `update_state(..., as_node="generate")` on the checkpoint history),
    STOP ends the run after Generate.
    """
    topology, context, config, state = _start(media, settings, model, topology, prompts, thread_id, state)
    if after_generate is None or "generate" not in topology.builder.nodes:
        return stream_run(topology.compile(checkpointer=checkpointer), state, config, context, on_step)
    checkpointer = checkpointer or memory_saver()
    paused = topology.builder.compile(checkpointer=checkpointer, interrupt_after=["generate"])
    first = stream_run(paused, state, config, context, on_step)
    decision = after_generate(first.state)
    if decision == STOP:
        return first
    graph = topology.compile(checkpointer=checkpointer)
    if isinstance(decision, dict):
        config = graph.update_state(paused.get_state(config).config, decision, as_node="generate")
    rest = stream_run(graph, None, config, context, on_step)
    rest.steps[:0] = first.steps
    rest.thread_id, rest.wall_s = first.thread_id, round(first.wall_s + rest.wall_s, 6)
    return rest


async def arun_clip(
    media: Media,
    settings: Settings,
    model: BaseChatModel,
    *,
    topology: Topology | None = None,
    prompts: PromptSet | None = None,
    thread_id: str | None = None,
    on_step: Callable[[Step], None] | None = None,
    state: RunState | None = None,
) -> RunOutcome:
    """`run_clip` on the event loop (LangGraph's async API): a whole run, as `gar eval` makes them.

    Replay, fork and track, which pause after Generate or keep checkpoints, use `run_clip`.
    """
    topology, context, config, state = _start(media, settings, model, topology, prompts, thread_id, state)
    steps = _Steps(config, on_step)
    async for part in topology.compile().astream(state, config, **_stream_options(context)):
        steps.take(*part)
    return steps.outcome()


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


def stream_run(graph, graph_input, config: dict, context: GarContext, on_step=None) -> RunOutcome:
    """Stream a compiled graph (from an input, or from a checkpoint when the input is None)."""
    steps = _Steps(config, on_step)
    for part in graph.stream(graph_input, config, **_stream_options(context)):
        steps.take(*part)
    return steps.outcome()

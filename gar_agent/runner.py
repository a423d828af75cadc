"""Run one clip: build the state, invoke the graph with the model in its context, collect steps.

The runner is the one place that joins inputs, settings, a topology and a chat model; the CLI,
the evaluation harness and replay all call it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel

from gar_agent.media import Media
from gar_agent.nodes.context import GarContext
from gar_agent.nodes.generate import initial_state
from gar_agent.prompts import PromptSet
from gar_agent.result import RunResult, run_result
from gar_agent.state import RunState, Settings
from gar_agent.topology import Topology, load_topology


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
) -> RunOutcome:
    """Invoke the graph on one clip and return the final state and result.

    `state` replaces the initial state built from `media` (replay starts from the recorded one).
    """
    topology = topology or load_topology(settings.graph)
    graph = topology.compile(checkpointer=checkpointer)
    context = GarContext(model=model, media=media, prompts=prompts or PromptSet())
    thread_id = thread_id or uuid.uuid4().hex
    config = {"configurable": {"thread_id": thread_id}}
    state = state or initial_state(media, settings, model)
    return stream_run(graph, state, config, context, on_step)


def stream_run(graph, graph_input, config: dict, context: GarContext, on_step=None) -> RunOutcome:
    """Stream a compiled graph (from an input, or from a checkpoint when the input is None)."""
    steps: list[Step] = []
    final: dict | None = None
    start = last = time.perf_counter()
    for namespace, mode, chunk in graph.stream(
        graph_input, config, context=context, stream_mode=["updates", "values"], subgraphs=True
    ):
        if mode == "values":
            if not namespace:
                final = chunk
            continue
        now = time.perf_counter()
        for node, update in chunk.items():
            if node.startswith("__") or update is None:
                continue
            step = Step(node=node, namespace=namespace, update=update, elapsed_s=round(now - last, 6))
            steps.append(step)
            if on_step:
                on_step(step)
        last = now
    end_state = RunState.model_validate(final)
    return RunOutcome(
        state=end_state,
        result=run_result(end_state),
        steps=steps,
        thread_id=config["configurable"]["thread_id"],
        wall_s=round(time.perf_counter() - start, 6),
    )

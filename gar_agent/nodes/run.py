"""The run level every per-source topology shares: Generate, one branch per source, the join."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from gar_agent.context import GarContext
from gar_agent.nodes.generate import generate
from gar_agent.nodes.routes import SOURCE_BRANCH, fan_out_sources
from gar_agent.state import RunState

GarGraph = StateGraph[Any, GarContext, Any, Any]
"""A graph of our nodes (a run's or a source's): any state schema, run with a `GarContext`."""


def run_graph(source: GarGraph) -> GarGraph:
    """START -> generate -> `localize` (the per-source graph, one Send each) -> END.

    The branches' records are joined into `sources` by its reducer; a failed Generate ends the run.
    """
    run = StateGraph(RunState, context_schema=GarContext)
    run.add_node("generate", generate)
    run.add_node(SOURCE_BRANCH, source.compile())
    run.add_edge(START, "generate")
    run.add_conditional_edges("generate", fan_out_sources, [SOURCE_BRANCH, END])
    run.add_edge(SOURCE_BRANCH, END)
    return run

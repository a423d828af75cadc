"""Ablation without Analyze: Generate, then Refine every source with no votes to go on.

    START -> generate -> localize (one branch per source, joined into `sources`) -> END
    localize:  START -> refine -> END

Refine's prompt says "no analysis was run" in place of the aggregated votes.
"""

from langgraph.graph import END, START, StateGraph

from gar_agent.nodes import GarContext, GarGraph, refine, run_graph
from gar_agent.state import SourceOutput, SourceState


def build_source() -> GarGraph:
    """One source: a single Refine call."""
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("refine", refine)
    source.add_edge(START, "refine")
    source.add_edge("refine", END)
    return source


def build() -> GarGraph:
    """The whole run: Generate, then one `localize` branch per source (see `run_graph`)."""
    return run_graph(build_source())


graph = build().compile()

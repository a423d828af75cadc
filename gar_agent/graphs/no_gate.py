"""Ablation without the gate: every source is analyzed (N votes) and then always refined.

START -> generate -> localize (one branch per source, joined into `sources`) -> END
localize:  START -> analyze -(< N votes)-> analyze
                    analyze -(N votes)-> refine -> END
"""

from langgraph.graph import END, START, StateGraph

from gar_agent.nodes import GarContext, GarGraph, analyze, refine, run_graph, votes_complete
from gar_agent.state import SourceOutput, SourceState


def build_source() -> GarGraph:
    """One source: the Analyze loop, then Refine whatever the votes say."""
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("analyze", analyze)
    source.add_node("refine", refine)
    source.add_edge(START, "analyze")
    # votes_complete says "gate" once N votes are in; here that leads straight to Refine.
    source.add_conditional_edges("analyze", votes_complete, {"analyze": "analyze", "gate": "refine", END: END})
    source.add_edge("refine", END)
    return source


def build() -> GarGraph:
    """The whole run: Generate, then one `localize` branch per source (see `run_graph`)."""
    return run_graph(build_source())


graph = build().compile()

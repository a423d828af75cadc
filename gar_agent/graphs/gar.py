"""The paper's graph: Generate, then per source Analyze (xN) -> Gate -> Refine (when gated).

START -> generate -> localize (one branch per source, joined into `sources`) -> END
localize:  START -> analyze -(< N votes)-> analyze
                    analyze -(N votes)-> gate -(refine)-> refine -> END
                                         gate -(skip)---------------> END
"""

from langgraph.graph import END, START, StateGraph

from gar_agent.nodes import (
    GarContext,
    GarGraph,
    analyze,
    gate,
    gate_decision,
    refine,
    run_graph,
    votes_complete,
)
from gar_agent.state import SourceOutput, SourceState


def build_source() -> GarGraph:
    """One source: the Analyze loop, the Gate, and Refine when the gate says so."""
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("analyze", analyze)
    source.add_node("gate", gate)
    source.add_node("refine", refine)
    source.add_edge(START, "analyze")
    source.add_conditional_edges("analyze", votes_complete, ["analyze", "gate", END])
    source.add_conditional_edges("gate", gate_decision, ["refine", END])
    source.add_edge("refine", END)
    return source


def build() -> GarGraph:
    """The whole run: Generate, then one `localize` branch per source (see `run_graph`)."""
    return run_graph(build_source())


graph = build().compile()

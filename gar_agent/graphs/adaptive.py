"""The paper's graph with early-stopping analysis: vote until the gate's decision is settled.

    START -> generate -> localize (one branch per source, joined into `sources`) -> END
    localize:  START -> analyze -(decision still open)-> analyze
                        analyze -(settled or N votes)-> gate -(refine)-> refine -> END
                                                        gate -(skip)---------------> END

Each pass asks `--votes-per-call` votes (default 1). The loop stops as soon as no way the
remaining votes could turn out (any av, either keep, or unparsable) would change the gate's
decision, so the gate decides exactly as with all N votes (gar_agent/early_stop.py), and
`analysis.n_votes` against `settings.n_votes` says how many votes that took.
"""

from langgraph.graph import END, START, StateGraph

from gar_agent.nodes import (
    GarContext,
    GarGraph,
    analyze_incremental,
    gate,
    gate_decision,
    refine,
    run_graph,
    votes_settled,
)
from gar_agent.state import SourceOutput, SourceState


def build_source() -> GarGraph:
    """One source: the early-stopping Analyze loop, the Gate, and Refine when the gate says so."""
    source = StateGraph(SourceState, context_schema=GarContext, output_schema=SourceOutput)
    source.add_node("analyze", analyze_incremental)
    source.add_node("gate", gate)
    source.add_node("refine", refine)
    source.add_edge(START, "analyze")
    source.add_conditional_edges("analyze", votes_settled, ["analyze", "gate", END])
    source.add_conditional_edges("gate", gate_decision, ["refine", END])
    source.add_edge("refine", END)
    return source


def build() -> GarGraph:
    """The whole run: Generate, then one `localize` branch per source (see `run_graph`)."""
    return run_graph(build_source())


graph = build().compile()

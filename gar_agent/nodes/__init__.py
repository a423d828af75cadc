"""The node library: each node documents what it reads from and writes to the state.

Graph files in `graphs/` wire these together; a researcher's own node is a function of the same
shape (`state, runtime -> dict of updates`) defined in the graph file itself, and `report` and
`source_values` are what such a per-source node needs (the README walks through one); `run_graph` wires the run level around a per-source graph.
"""

from gar_agent.context import GarContext
from gar_agent.nodes.adaptive import analyze_incremental, votes_settled
from gar_agent.nodes.analyze import analyze, source_values
from gar_agent.nodes.common import report
from gar_agent.nodes.gate import gate
from gar_agent.nodes.generate import generate
from gar_agent.nodes.refine import refine
from gar_agent.nodes.routes import SOURCE_BRANCH, fan_out_sources, gate_decision, votes_complete
from gar_agent.nodes.run import GarGraph, run_graph

__all__ = [
    "SOURCE_BRANCH",
    "GarContext",
    "analyze",
    "analyze_incremental",
    "fan_out_sources",
    "gate",
    "gate_decision",
    "generate",
    "refine",
    "report",
    "GarGraph",
    "run_graph",
    "source_values",
    "votes_complete",
    "votes_settled",
]

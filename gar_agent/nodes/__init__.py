"""The node library: each node documents what it reads from and writes to the state.

Graph files in `graphs/` wire these together; a researcher's own node is a function of the same
shape (`state, runtime -> dict of updates`) defined in the graph file itself.
"""

from gar_agent.nodes.analyze import analyze
from gar_agent.nodes.context import GarContext
from gar_agent.nodes.gate import gate
from gar_agent.nodes.generate import generate
from gar_agent.nodes.refine import refine
from gar_agent.nodes.routes import SOURCE_BRANCH, fan_out_sources, gate_decision, votes_complete

__all__ = [
    "GarContext",
    "SOURCE_BRANCH",
    "analyze",
    "fan_out_sources",
    "gate",
    "gate_decision",
    "generate",
    "refine",
    "votes_complete",
]

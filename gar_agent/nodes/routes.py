"""Routers: pure functions of the state, typed with their targets so drawings are exact."""

from __future__ import annotations

from typing import Literal

from langgraph.types import Send

from gar_agent.nodes.runnable import plain_node
from gar_agent.state import RunState, SourceState

# LangGraph's END ("__end__"), typed as the literal the routers' return annotations name: LangGraph
# types its END as a plain str, which those annotations (read to draw the graphs) would not accept.
END: Literal["__end__"] = "__end__"

SOURCE_BRANCH = "localize"
"""The node each source is sent to after Generate (the per-source subgraph)."""


@plain_node
def fan_out_sources(state: RunState) -> list[Send] | Literal["__end__"]:
    """One branch per source after Generate; a failed Generate ends the run."""
    if state.error or not state.sources:
        return END
    return [
        Send(
            SOURCE_BRANCH,
            {
                "settings": state.settings,
                "image": state.image,
                "audio": state.audio,
                "source": s,
                "peers": [p for p in state.sources if p.index != s.index],
            },
        )
        for s in state.sources
    ]


@plain_node
def votes_complete(state: SourceState) -> Literal["analyze", "gate", "__end__"]:
    """Loop Analyze until N votes are in; a model failure ends the branch."""
    if state.source.error:
        return END
    return "gate" if len(state.source.votes) >= state.settings.n_votes else "analyze"


@plain_node
def gate_decision(state: SourceState) -> Literal["refine", "__end__"]:
    """Refine only when the gate says so."""
    gate = state.source.gate
    return "refine" if gate is not None and gate.refine else END

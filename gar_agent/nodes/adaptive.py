"""Early-stopping Analyze (the `adaptive` graph): vote a few at a time, stop once the gate is settled.

analyze_incremental reads and writes what `analyze` does (one pass of at most `votes_per_call or 1`
votes; the user's settings in the state are left as they were). votes_settled reads settings
(n_votes, thresholds), source.votes, source.audio_confidence and source.error. The analysis then
holds the votes collected (`analysis.n_votes`) against N (`settings.n_votes`).
"""

from __future__ import annotations

from typing import Literal

from gar_agent.context import GarContext
from gar_agent.early_stop import decision_settled
from gar_agent.nodes.analyze import analyze
from gar_agent.nodes.routes import END
from gar_agent.nodes.runnable import Asks, model_node, plain_node
from gar_agent.state import SourceState


@model_node
def analyze_incremental(state: SourceState, ctx: GarContext) -> Asks:
    """One Analyze pass asking at most `votes_per_call` votes (default 1), so the loop can stop early."""
    # With votes_per_call unset, Analyze asks for all N at once and there would be nothing to save.
    per_pass = state.settings.model_copy(update={"votes_per_call": state.settings.votes_per_call or 1})
    return (yield from analyze.body(state.model_copy(update={"settings": per_pass}), ctx))


@plain_node
def votes_settled(state: SourceState) -> Literal["analyze", "gate", "__end__"]:
    """Loop Analyze until N votes are in or the rest can no longer change the gate; failure ends it."""
    src, settings = state.source, state.settings
    if src.error:
        return END
    if decision_settled(src.votes, settings.n_votes, src.audio_confidence, settings):
        return "gate"
    return "analyze"

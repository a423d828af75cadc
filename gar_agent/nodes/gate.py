"""Gate, per source: skip refinement iff keep and av >= tau_av and audio_conf >= tau_audio.

Reads: settings (tau_av, tau_audio), source.analysis (or source.votes when no aggregate exists
yet), source.audio_confidence.
Writes: source.gate (the values against the thresholds, the decision and why), source.analysis.
Protocol reference with several sources: it waits until every source has voted, and where one
dropped the clip it decides nothing and records why in source.error (protocols/script_order.py).
"""

from __future__ import annotations

from gar_agent import rules
from gar_agent.context import GarContext
from gar_agent.nodes.common import report
from gar_agent.nodes.runnable import Asks, model_node
from gar_agent.protocols.script_order import everyone, script_order
from gar_agent.state import SourceState


@model_node
def gate(state: SourceState, ctx: GarContext) -> Asks:
    """Decide whether this source goes to Refine; the route itself is `gate_decision`."""
    src = state.source.model_copy()  # fields are replaced below, never mutated: a shallow copy will do
    if (order := script_order(ctx)) is not None:  # protocol reference: the scripts gate once all have voted
        order.end(src.index)
        if dropped := (yield everyone(order)):
            src.error = f"gate (source {src.index}): {dropped}"
            return report(src)
    analysis = src.analysis or rules.aggregate_votes(src.votes)
    src.analysis = analysis
    src.gate = rules.gate(analysis, src.audio_confidence, state.settings)
    return report(src)

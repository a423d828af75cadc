"""Gate, per source: skip refinement iff keep and av >= tau_av and audio_conf >= tau_audio.

Reads: settings (tau_av, tau_audio), source.analysis (or source.votes when no aggregate exists
yet), source.audio_confidence.
Writes: source.gate (the values against the thresholds, the decision and why), source.analysis.
"""

from __future__ import annotations

from gar_agent import rules
from gar_agent.nodes.common import report
from gar_agent.nodes.runnable import plain_node
from gar_agent.state import SourceState


@plain_node
def gate(state: SourceState) -> dict:
    """Decide whether this source goes to Refine; the route itself is `gate_decision`."""
    src = state.source.model_copy()  # fields are replaced below, never mutated: a shallow copy will do
    analysis = src.analysis or rules.aggregate_votes(src.votes)
    src.analysis = analysis
    src.gate = rules.gate(analysis, src.audio_confidence, state.settings)
    return report(src)

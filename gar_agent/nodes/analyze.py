"""Analyze (Stage 2), one pass: sampled votes on whether the source's box holds what sounds.

Reads: settings (n_votes, votes_per_call, sampling, protocol), image, source (box, audio class and
confidence), peers. Writes: calls (the new one), source.votes (each raw answer, parsed or dropped with the
reason), source.analysis (the aggregate of the votes so far), source.error.

Protocol reference with several sources: a source's first pass waits for the earlier sources'
votes, and a failure ends the clip for every branch (protocols/script_order.py).

One pass asks for up to `votes_per_call` votes in one model call; the graph loops back here until N
votes are in, so each loop is a step you can inspect and fork.
"""

from __future__ import annotations

from gar_agent import protocols
from gar_agent.context import GarContext
from gar_agent.nodes.common import report, source_values
from gar_agent.nodes.runnable import Asks, model_node
from gar_agent.protocols.script_order import earlier, script_order
from gar_agent.state import ModelCall, SourceState

__all__ = ["analyze", "source_values"]


@model_node
def analyze(state: SourceState, ctx: GarContext) -> Asks:
    """Collect the next votes for this source and re-aggregate."""
    # a shallow copy with fields replaced, never mutated in place: the input is the recorded state
    settings, src = state.settings, state.source.model_copy()
    protocol = protocols.protocol(settings.protocol)
    order = script_order(ctx)
    # protocol reference: the earlier sources vote first
    if order is not None and not src.votes and (dropped := (yield earlier(order, src.index))):
        src.error = f"analyze (source {src.index}): not asked: {dropped}"
        return report(src)
    want = min(settings.votes_per_pass, settings.n_votes - len(src.votes))
    call = yield protocol.analysis_request(state, ctx, want)
    assert isinstance(call, ModelCall)  # the driver answers a Request with its call (a Wait with a message)
    if call.error:
        src.error = f"analyze (source {src.index}): the model failed: {call.error}"
        if order is not None:  # the script's model call raises: the clip is dropped
            order.end(src.index, f"the model failed: {call.error}")
        return report(src, call)
    votes, fatal = protocol.parse_votes(call.answers, len(src.votes), call)
    src.votes = [*src.votes, *votes]
    if fatal:
        src.error = f"analyze (source {src.index}): {fatal}"
        if order is not None:
            order.end(src.index, fatal)
        return report(src, call)
    src.analysis = protocol.finish_analysis(src.votes, ctx)
    if order is not None and len(src.votes) >= settings.n_votes:  # also for a graph with no Gate or Refine after
        order.end(src.index)
    return report(src, call)

"""Refine (Stage 3), per source: one greedy call proposes a conservative edit of the box.

Reads: settings (protocol), image, source (box, audio class, analysis), peers.
Writes: calls (the new one), source.refinement (raw answer, parsed ops/bbox, what was applied, clamp),
source.box, source.error.
"""

from __future__ import annotations

from gar_agent import protocols
from gar_agent.context import GarContext
from gar_agent.nodes.common import report
from gar_agent.nodes.runnable import Asks, model_node
from gar_agent.protocols.script_order import everyone, script_order
from gar_agent.rules import max_delta
from gar_agent.state import ModelCall, Refinement, SourceState


@model_node
def refine(state: SourceState, ctx: GarContext) -> Asks:
    """Ask for a refined box and apply it within the method's clamps (in image pixels)."""
    image = state.image
    src = state.source.model_copy()  # fields are replaced below, never mutated: a shallow copy will do
    if (order := script_order(ctx)) is not None:  # protocol reference (a graph without a Gate: wait here)
        order.end(src.index)
        if dropped := (yield everyone(order)):
            src.error = f"refine (source {src.index}): not asked: {dropped}"
            return report(src)
    request, resolve = protocols.protocol(state.settings.protocol).refine(state, ctx)
    call = yield request
    assert isinstance(call, ModelCall)  # the driver answers a Request with its call (a Wait with a message)
    if call.error:
        src.error = f"refine (source {src.index}): the model failed: {call.error}"
        src.refinement = Refinement(
            error=call.error,
            previous_box=src.box,
            box=src.box,
            max_delta=max_delta(image.width, image.height),
            applied="parse_error",
        )
        return report(src, call)
    src.refinement = resolve(call.answers[0])
    src.box = src.refinement.box
    return report(src, call)

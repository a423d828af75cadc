"""Refine (Stage 3), per source: one greedy call proposes a conservative edit of the box.

Reads: settings (protocol), image, source (box, audio class, analysis), peers.
Writes: calls (the new one), source.refinement (raw answer, parsed ops/bbox, what was applied, clamp),
source.box, source.error.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gar_agent import protocols
from gar_agent.calls import ask
from gar_agent.nodes.common import report
from gar_agent.nodes.context import GarContext
from gar_agent.rules import max_delta
from gar_agent.state import Refinement, SourceState


def refine(state: SourceState, runtime: Runtime[GarContext]) -> dict:
    """Ask for a refined box and apply it within the method's clamps (in image pixels)."""
    ctx, image = runtime.context, state.image
    src = state.source.model_copy(deep=True)
    request, resolve = protocols.protocol(state.settings.protocol).refine(state, ctx)
    call = ask(ctx.model, ctx.media, request)
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

"""Refine (Stage 3), per source: one greedy call proposes a conservative edit of the box.

Reads: settings, image, source (box, audio class, analysis), peers.
Writes: source.calls, source.refinement (raw answer, parsed ops/bbox, what was applied, clamp),
source.box, source.error.
"""

from __future__ import annotations

import json

from langgraph.runtime import Runtime

from gar_agent.answers import parse_refine
from gar_agent.calls import Request, ask
from gar_agent.nodes.analyze import source_values
from gar_agent.nodes.common import report
from gar_agent.nodes.context import GarContext
from gar_agent.prompts import template_name
from gar_agent.rules import max_delta, resolve_refinement
from gar_agent.state import Refinement, SourceState


def _analysis_text(state: SourceState) -> str:
    a = state.source.analysis
    if a is None:  # a graph without Analyze (the no_analysis ablation)
        return "no analysis was run"
    return json.dumps(
        {
            "av_consistency": round(a.av_consistency, 3),
            "keep": a.keep,
            "role_tags": a.role_tags,
            "anchor_votes": [{"anchor": v.anchor, "score": round(v.score, 3)} for v in a.anchor_votes],
        }
    )


def refine(state: SourceState, runtime: Runtime[GarContext]) -> dict:
    """Ask for a refined box and apply it within the method's clamps (in image pixels)."""
    ctx, settings, image = runtime.context, state.settings, state.image
    src = state.source.model_copy(deep=True)
    limit = max_delta(image.width, image.height)
    template = template_name("refine", settings.sources)
    # The clamp is told to the model in its own frame; it is enforced in image pixels below.
    frame_limit = max(1, round(limit * min(image.frame[0] / image.width, image.frame[1] / image.height)))
    prompt = ctx.prompts.render(template, analysis=_analysis_text(state), max_delta=frame_limit, **source_values(state))
    call = ask(ctx.model, ctx.media, Request("refine", src.index, template, prompt))
    src.calls.append(call)
    if call.error:
        src.error = f"refine (source {src.index}): the model failed: {call.error}"
        src.refinement = Refinement(
            error=call.error, previous_box=src.box, box=src.box, max_delta=limit, applied="parse_error"
        )
        return report(src)
    raw = call.answers[0]
    parsed, error = parse_refine(raw)
    box, applied, clamped = resolve_refinement(parsed, src.box, image.width, image.height, image.frame)
    src.refinement = Refinement(
        raw=raw,
        parsed=parsed,
        error=error,
        previous_box=src.box,
        box=box,
        max_delta=limit,
        applied=applied,
        clamped=clamped,
    )
    src.box = box
    return report(src)

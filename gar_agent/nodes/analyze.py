"""Analyze (Stage 2), one pass: sampled votes on whether the source's box holds what sounds.

Reads: settings (n_votes, votes_per_call, sampling), image, source (box, audio class and
confidence), peers. Writes: source.calls, source.votes (each raw answer, parsed or dropped with the
reason), source.analysis (the aggregate of the votes so far), source.error.

One pass asks for up to `votes_per_call` votes in one model call; the graph loops back here until N
votes are in, so each loop is a step you can inspect and fork.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gar_agent.answers import parse_vote
from gar_agent.calls import Request, ask
from gar_agent.nodes.common import classes_text, frame_values, model_box, report
from gar_agent.nodes.context import GarContext
from gar_agent.prompts import template_name
from gar_agent.rules import aggregate_votes
from gar_agent.state import SourceState, Vote


def source_values(state: SourceState) -> dict:
    """Prompt values about the source and its peers, shared by Analyze and Refine."""
    src, k = state.source, state.settings.sources
    everyone = sorted([src, *state.peers], key=lambda s: s.index)
    others = [f'"{p.audio_class}" at {model_box(p.box, state.image)}' for p in state.peers]
    return {
        **frame_values(state.image),
        "k": k,
        "source_number": src.index + 1,
        "audio_class": src.audio_class,
        "audio_confidence": f"{src.audio_confidence:.2f}",
        "audio_classes_text": classes_text([s.audio_class for s in everyone]),
        "box": model_box(src.box, state.image),
        "other_boxes": "; ".join(others) or "none",
    }


def analyze(state: SourceState, runtime: Runtime[GarContext]) -> dict:
    """Collect the next votes for this source and re-aggregate."""
    ctx, settings, src = runtime.context, state.settings, state.source.model_copy(deep=True)
    want = min(settings.batch, settings.n_votes - len(src.votes))
    template = template_name("analyze", settings.sources)
    request = Request(
        "analyze",
        src.index,
        template,
        ctx.prompts.render(template, **source_values(state)),
        temperature=settings.vote_temperature,
        top_p=settings.vote_top_p,
        n=want,
    )
    call = ask(ctx.model, ctx.media, request)
    src.calls.append(call)
    if call.error:
        src.error = f"analyze (source {src.index}): the model failed: {call.error}"
        return report(src)
    for raw in call.answers:
        parsed, error = parse_vote(raw)
        src.votes.append(Vote(index=len(src.votes), raw=raw, parsed=parsed, error=error))
    src.analysis = aggregate_votes(src.votes)
    return report(src)

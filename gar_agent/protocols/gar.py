"""Protocol `gar`: the project's own prompts and rules (the README's table lists every difference).

- Generate names the sounds first (audio only), then asks for "box i for sound i" by name, so
  pairing is fixed by the prompt; an unusable box answer gets one repair turn.
- Analyze and Refine see the other sources' boxes (duets and beyond).
- Answers are parsed robustly (fences, prose, trailing commas, numeric strings) and validated.
- Prompts speak the model's own coordinate frame (Qwen's resized image); results are mapped back.
- One system message for every call, media before text, so a server's prefix cache serves a
  clip's image and audio once.
"""

from __future__ import annotations

import json
from collections.abc import Generator

from gar_agent.answers import parse_audio, parse_boxes, parse_refine, parse_vote
from gar_agent.calls import Request, question_history
from gar_agent.context import GarContext
from gar_agent.prompts import template_name
from gar_agent.protocols.common import ended, model_failed
from gar_agent.protocols.values import classes_text, frame_values, source_values
from gar_agent.rules import aggregate_votes, clip_box, max_delta, resolve_refinement, scale_box
from gar_agent.state import (
    Analysis,
    GenerateRecord,
    ModelCall,
    ParsedAnswer,
    Refinement,
    RunState,
    SourceRecord,
    SourceState,
    Stage,
    Vote,
)

SYSTEM = "system.txt"
MODEL_FRAME = True  # prompts speak the model's resized frame (GarProtocol.MODEL_FRAME)
# Audio before the image: the audio-only call then shares the system message and the audio with every
# other call of the clip, so a prefix cache (a server's, or the local adapter's) holds the audio once.
CLIP_MEDIA = ("audio", "image")


def system_text(ctx: GarContext) -> str | None:
    """The one system message of every call (None with a prompt set that has none)."""
    return ctx.prompts.render(SYSTEM) if (ctx.prompts.directory / SYSTEM).is_file() else None


def _request(ctx: GarContext, state, stage: Stage, source: int | None, template: str, prompt: str, **kw) -> Request:
    kw.setdefault("media", CLIP_MEDIA)
    return Request(
        stage, source, template, prompt, system=system_text(ctx), max_tokens=state.settings.max_new_tokens, **kw
    )


def generate(state: RunState, ctx: GarContext) -> Generator[Request, ModelCall, dict]:
    """Ask for the K sound classes (audio only), then for K boxes and descriptions (image + audio).

    Yields each request (the node sends back its call) and returns the update.
    """
    k, image = state.settings.sources, state.image
    assert image is not None  # the generate node fills the frame from the run's media before asking
    record = GenerateRecord()
    calls: list[ModelCall] = []

    # Call B: audio only. A failed answer means "unknown" with confidence 0 (no repair).
    audio_tpl = template_name("audio", k)
    call = yield _request(ctx, state, "audio", None, audio_tpl, ctx.prompts.render(audio_tpl, k=k), media=("audio",))
    calls.append(call)
    if call.error:
        return model_failed(record, calls, "audio")
    value, error = parse_audio(call.answers[0], k)
    record.audio.append(ParsedAnswer(raw=call.answers[0], value=value, error=error))
    classes = value["classes"] if value else ["unknown"] * k
    confidences = value["confidences"] if value else [0.0] * k

    # Call A: image + audio, one box per named sound; one repair attempt if unusable.
    box_tpl = template_name("generate", k)
    prompt = ctx.prompts.render(box_tpl, k=k, audio_classes_text=classes_text(classes), **frame_values(image))
    question = _request(ctx, state, "generate", None, box_tpl, prompt)
    request, boxes = question, None
    for attempt in range(state.settings.max_repairs + 1):
        call = yield request
        calls.append(call)
        if call.error:
            return model_failed(record, calls, "box")
        boxes, error = parse_boxes(call.answers[0], k)
        record.boxes.append(ParsedAnswer(raw=call.answers[0], value=boxes, error=error))
        if boxes is not None:
            break
        if attempt < state.settings.max_repairs:
            repair = ctx.prompts.render("repair.txt", error=error, answer=call.answers[0])
            history = question_history(ctx.media, question, call.answers[0])
            request = _request(ctx, state, "generate", None, "repair.txt", repair, history=history)
    if boxes is None:
        tries = len(record.boxes)
        return ended(
            record, calls, f"generate: the box answer was unusable after {tries} tries: {record.boxes[-1].error}"
        )

    sources = []
    for i in range(k):
        box = clip_box(
            scale_box(boxes["boxes"][i], image.frame, (image.width, image.height)), image.width, image.height
        )
        sources.append(
            SourceRecord(
                index=i,
                initial_box=box,
                box=box,
                description=boxes["descriptions"][i],
                audio_class=classes[i],
                audio_confidence=confidences[i],
            )
        )
    return {"generate": record, "calls": calls, "sources": sources}


def analysis_request(state: SourceState, ctx: GarContext, n: int) -> Request:
    """One pass asking for n sampled votes on the source's box."""
    settings = state.settings
    template = template_name("analyze", settings.sources)
    prompt = ctx.prompts.render(template, **source_values(state))
    return _request(
        ctx, state, "analyze", state.source.index, template, prompt,
        temperature=settings.vote_temperature, top_p=settings.vote_top_p, n=n,
    )  # fmt: skip


def parse_votes(answers: list[str], first: int, sent: object = None) -> tuple[list[Vote], str | None]:
    """Each answer parsed and validated; an unusable one is kept with its reason (never fatal).

    The answers are read on their own: `sent` (the call they came from) is for protocols whose model
    echoes the prompt (reference)."""
    votes = []
    for i, raw in enumerate(answers):
        parsed, error = parse_vote(raw)
        votes.append(Vote(index=first + i, raw=raw, parsed=parsed, error=error))
    return votes, None


def finish_analysis(votes: list[Vote], ctx: GarContext | None = None) -> Analysis:
    """The aggregate (METHOD: mean av of clipped values, strict-majority keep, top tags, mean anchors);
    it depends on the votes alone (the context is where a protocol finds a prompt set's clean-up)."""
    return aggregate_votes(votes)


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


def refine(state: SourceState, ctx: GarContext):
    """The Refine request, and a resolver from its answer to the Refinement record (image pixels)."""
    image, src = state.image, state.source
    limit = max_delta(image.width, image.height)
    template = template_name("refine", state.settings.sources)
    # The clamp is told to the model in its own frame; it is enforced in image pixels.
    frame_limit = max(1, round(limit * min(image.frame[0] / image.width, image.frame[1] / image.height)))
    prompt = ctx.prompts.render(template, analysis=_analysis_text(state), max_delta=frame_limit, **source_values(state))
    request = _request(ctx, state, "refine", src.index, template, prompt)

    def resolve(answer: str) -> Refinement:
        parsed, error = parse_refine(answer)
        box, applied, clamped = resolve_refinement(parsed, src.box, image.width, image.height, image.frame)
        return Refinement(
            raw=answer,
            parsed=parsed,
            error=error or (parsed.ops_error if parsed else None),
            previous_box=src.box,
            box=box,
            max_delta=limit,
            applied=applied,
            clamped=clamped,
            refined_description=parsed.refined_description if parsed else "",
        )

    return request, resolve

"""Generate (Stage 1): name the K sounds from the audio, then box each named sound in the image.

Reads: settings, image, audio. Writes: generate (both calls, parsed answers, repairs), sources
(one record per sound: initial box, description, audio class and confidence), error.

The audio call comes first so the box call can ask for "box i for sound i": that is how boxes are
paired with audio classes, by construction rather than by the order two independent answers happen
to list them in.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from gar_agent.answers import parse_audio, parse_boxes
from gar_agent.calls import Request, ask, question_history
from gar_agent.nodes.common import classes_text, frame_values
from gar_agent.nodes.context import GarContext
from gar_agent.prompts import template_name
from gar_agent.rules import clip_box, scale_box
from gar_agent.state import GenerateRecord, ParsedAnswer, RunState, SourceRecord


def generate(state: RunState, runtime: Runtime[GarContext]) -> dict:
    """Ask for the K sound classes (audio only), then for K boxes and descriptions (image + audio)."""
    ctx, k = runtime.context, state.settings.sources
    record = GenerateRecord()

    # Call B: audio only. A failed answer means "unknown" with confidence 0 (no repair).
    audio_tpl = template_name("audio", k)
    call = ask(ctx.model, ctx.media, Request("audio", None, audio_tpl, ctx.prompts.render(audio_tpl, k=k), ("audio",)))
    record.calls.append(call)
    if call.error:
        return {"generate": record, "error": f"generate: the model failed on the audio call: {call.error}"}
    value, error = parse_audio(call.answers[0], k)
    record.audio.append(ParsedAnswer(raw=call.answers[0], value=value, error=error))
    classes = value["classes"] if value else ["unknown"] * k
    confidences = value["confidences"] if value else [0.0] * k

    # Call A: image + audio, one box per named sound; one repair attempt if unusable.
    box_tpl = template_name("generate", k)
    prompt = ctx.prompts.render(box_tpl, k=k, audio_classes_text=classes_text(classes), **frame_values(state.image))
    request = Request("generate", None, box_tpl, prompt)
    boxes = None
    for attempt in range(state.settings.max_repairs + 1):
        call = ask(ctx.model, ctx.media, request)
        record.calls.append(call)
        if call.error:
            return {"generate": record, "error": f"generate: the model failed on the box call: {call.error}"}
        boxes, error = parse_boxes(call.answers[0], k)
        record.boxes.append(ParsedAnswer(raw=call.answers[0], value=boxes, error=error))
        if boxes is not None:
            break
        if attempt < state.settings.max_repairs:
            repair = ctx.prompts.render("repair.txt", error=error, answer=call.answers[0])
            history = question_history(ctx.media, Request("generate", None, box_tpl, prompt), call.answers[0])
            request = Request("generate", None, "repair.txt", repair, history=history)
    if boxes is None:
        tries = len(record.boxes)
        return {
            "generate": record,
            "error": f"generate: the box answer was unusable after {tries} tries: {record.boxes[-1].error}",
        }

    image = state.image
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
    return {"generate": record, "sources": sources}

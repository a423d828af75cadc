"""Protocol `reference`: the released GAR-SSL scripts' behaviour, point by point (METHOD.md, "(code)").

What this protocol does that `gar` does not (the README's table says why each differs):
- Generate: the box call (image + audio) runs first and knows nothing of the audio; the audio call
  (audio only) follows; in duets box i is paired with class i by list order. No repair turn.
- Every stage sends its own system message (imported with the prompts); 256 new tokens.
- JSON is found as the scripts find it (`extract_json`), votes are accepted and aggregated as they
  are (`vote_fields`, `aggregate`), VGGSound-Duet re-cleans its aggregate (`clean_duet`).
- Boxes are read as original-image pixels, converted with `int()` and clipped by the scripts' own
  `clip_box` (which, unlike ours, does not grow a box inward at the border).
- Answers are parsed as the scripts parse them: the decoded prompt and answer (`script_text`), so a
  blank answer is searched in the prompt and "[/INST]" cuts what precedes it.
- A sample fails exactly where a script would raise: Stage A without a usable box, an audio answer
  with no JSON, a vote whose JSON is not an object (once that source's N votes are in; no later
  call is made and no gate counted: the sources keep the scripts' order, protocols/script_order.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gar_agent.calls import Request
from gar_agent.context import GarContext
from gar_agent.protocols.common import ended, model_failed
from gar_agent.protocols.script_order import ScriptOrder
from gar_agent.rules import gar_clip_box, max_delta  # max(4, round(0.08 * min(W, H))): the scripts' clamp
from gar_agent.state import (
    Analysis,
    AnchorVote,
    Box,
    GenerateRecord,
    ModelCall,
    ParsedAnswer,
    Refinement,
    RunState,
    SourceRecord,
    SourceState,
    Stage,
    Vote,
    VoteAnswer,
)

MODEL_FRAME = False  # prompts and answers in the image's pixels, as the scripts read them (GarProtocol)
_OBJECT = re.compile(r"({[\s\S]*?})")
_HEADERS = ("\nassistant\n", "\nassistant:", "assistant\n", "assistant:")
_SEP = re.compile(r"[\s\-]+")
# json.loads on untrusted text raises these (RecursionError: nesting past the limit); the scripts catch
# any exception there and try the next candidate
_JSON_ERRORS = (ValueError, RecursionError)
# Where the scripts' own conversions raise on an answer's data (an integer too large for a float, a
# value int() refuses): inside Stage A/B that raise drops the clip, as their per-clip `except` does
_DATA_ERRORS = (TypeError, ValueError, OverflowError, RecursionError)


class ScriptFailure(Exception):
    """Where a released script raises and drops the sample; the message says what happened."""


# --- answers ------------------------------------------------------------------------------------


class Sent(Protocol):
    """The text a call sent (a Request or the ModelCall that records it)."""

    @property
    def prompt(self) -> str: ...

    @property
    def system(self) -> str | None: ...


@dataclass(frozen=True)
class _Text:
    prompt: str = ""
    system: str | None = None


NOTHING_SENT = _Text()  # parsing an answer on its own, as the tests of single answers do


def script_text(answer: str, sent: Sent = NOTHING_SENT) -> str:
    """The text the scripts parse for an answer: what their `run_chat` returns.

    It decodes the whole conversation, prompt and answer, with special tokens dropped, which under
    Qwen2.5-Omni's chat template reads "system\\n<system>\\nuser\\n<prompt>\\nassistant\\n<answer>" (the
    media placeholders are special tokens); keeps only what follows the last "[/INST]"; and strips.
    So an empty or blank answer leaves the assistant header without its newline, the header split
    finds nothing, and the JSON search runs over the prompt itself (its example JSON, a class text
    holding "{}"); "[/INST]" in an answer drops everything before it.
    """
    text = f"system\n{sent.system or ''}\nuser\n{sent.prompt}\nassistant\n{answer}"
    if "[/INST]" in text:
        text = text.split("[/INST]")[-1].strip()
    return text.strip()


def extract_json(answer: str, sent: Sent = NOTHING_SENT) -> Any:
    """The scripts' JSON finder on `script_text`: header strip, fenced blocks first, then the first non-greedy `{...}`.

    The header split leaves what follows the last assistant header: the answer, unless the answer is
    blank or cut by "[/INST]" (`script_text`). An unfenced object with a nested object
    (`{"ops": {...}}`) is not found: the non-greedy match stops at the first `}`.
    """
    text = script_text(answer, sent)
    for marker in _HEADERS:
        if marker in text:
            text = text.split(marker)[-1]
    text = text.strip().replace("```json", "```").replace("```JSON", "```")
    if "```" in text:
        parts = text.split("```")
        for chunk in parts[1::2]:
            try:
                return json.loads(chunk.strip())
            except _JSON_ERRORS:
                pass
        text = "".join([parts[0], *parts[2::2]])
    for m in _OBJECT.finditer(text):
        try:
            return json.loads(m.group(1))
        except _JSON_ERRORS:
            continue
    raise ScriptFailure("no JSON object in the answer")


def _object(answer: str, stage: str, sent: Sent = NOTHING_SENT) -> dict:
    value = extract_json(answer, sent)
    if not isinstance(value, dict):  # the scripts call .get on it and raise
        raise ScriptFailure(f"{stage}: the answer's JSON is a {type(value).__name__}, not an object")
    return value


def _ints(values: list, stage: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError, OverflowError) as e:
        raise ScriptFailure(f"{stage}: a coordinate is not an integer ({e})") from None


clip_box = gar_clip_box  # the scripts' clip, one definition (rules.py)


def clamp_delta(previous: Box, box: Box, limit: int, width: int, height: int) -> Box:
    """The scripts' clamp: every side within +-limit of the previous box, then their clip."""
    out = [int(np.clip(n, p - limit, p + limit)) for n, p in zip(box, previous)]
    return clip_box(out, width, height)


def apply_ops(previous: Box, ops: Any, width: int, height: int, limit: int) -> Box:
    """The scripts' ops: delta / expand / shrink / recenter with `int()` values; anything else is ignored."""
    if not isinstance(ops, dict) or "type" not in ops:
        return previous
    x1, y1, x2, y2 = previous
    kind = str(ops.get("type", "")).lower()
    if kind == "delta":
        dx, dy, dl, dr, dt, db = (int(ops.get(k, 0)) for k in ("dx", "dy", "dl", "dr", "dt", "db"))
        candidate = [x1 + dx + dl, y1 + dy + dt, x2 + dx + dr, y2 + dy + db]
    elif kind in ("expand", "shrink"):
        amount = int(ops.get("amount", 0))
        amount = abs(amount) if kind == "expand" else -abs(amount)
        candidate = [x1 - amount, y1 - amount, x2 + amount, y2 + amount]
    elif kind == "recenter" and isinstance(ops.get("target"), (list, tuple)) and len(ops["target"]) == 2:
        cx, cy = int(ops["target"][0]), int(ops["target"][1])
        hw, hh = max(1, (x2 - x1) // 2), max(1, (y2 - y1) // 2)
        candidate = [cx - hw, cy - hh, cx + hw, cy + hh]
    else:
        return previous
    return clamp_delta(previous, clip_box(candidate, width, height), limit, width, height)


def vote_fields(obj: dict) -> VoteAnswer:
    """One vote as the scripts read it: missing/non-numeric av -> 0, keep by truthiness, loose lists."""
    try:
        av = float(obj.get("av_consistency", 0.0))
    except (TypeError, ValueError, OverflowError):
        av = 0.0
    tags = obj.get("role_tags") or []
    items = obj.get("anchor_votes") or []
    anchors = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            score = float(item.get("score", 0.0))
        except (TypeError, ValueError, OverflowError):
            score = 0.0
        anchors.append(AnchorVote(anchor=str(item.get("anchor", "")), score=score))
    return VoteAnswer(
        av_consistency=av,
        keep=bool(obj.get("keep", False)),
        role_tags=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
        anchor_votes=anchors,
    )


def parse_vote(answer: str, sent: Sent = NOTHING_SENT) -> tuple[VoteAnswer | None, str | None]:
    """(vote, None); (None, why) for an answer the scripts skip; ScriptFailure where they raise."""
    try:
        value = extract_json(answer, sent)
    except ScriptFailure as e:
        return None, f"{e} (the released code skips this vote)"
    if not isinstance(value, dict):
        raise ScriptFailure(f"analyze: a vote's JSON is a {type(value).__name__}, not an object")
    return vote_fields(value), None


def parse_votes(answers: list[str], first: int, sent: Sent = NOTHING_SENT) -> tuple[list[Vote], str | None]:
    """The votes of one pass (`sent`: the call they answer); the second value is set where a script
    would raise (a non-object vote)."""
    votes, fatal = [], None
    for i, raw in enumerate(answers):
        try:
            parsed, error = parse_vote(raw, sent)
        except ScriptFailure as e:
            parsed, error = None, str(e)
            fatal = fatal or f"{e}: the released code drops this sample"
        votes.append(Vote(index=first + i, raw=raw, parsed=parsed, error=error))
    return votes, fatal


def _name(text: str) -> str:
    return _SEP.sub("_", text.strip().lower())


def aggregate(votes: list[Vote]) -> Analysis:
    """The scripts' aggregate: clip(mean av), top-4 tags by count, mean score per anchor, strict-majority keep."""
    parsed = [v.parsed for v in votes if v.parsed is not None]
    if not parsed:
        return Analysis(av_consistency=0.0, keep=False, role_tags=[], anchor_votes=[], n_votes=len(votes), n_parsed=0)
    av = float(np.clip(np.mean([p.av_consistency for p in parsed]), 0.0, 1.0))
    counts: dict[str, int] = {}
    for p in parsed:
        for tag in p.role_tags:
            if token := _name(tag):
                counts[token] = counts.get(token, 0) + 1
    tags = [t for t, _ in sorted(counts.items(), key=lambda x: -x[1])[:4]]
    scores: dict[str, list[float]] = {}
    for p in parsed:
        for a in p.anchor_votes:
            if name := _name(a.anchor)[:48]:
                scores.setdefault(name, []).append(float(np.clip(a.score, 0.0, 1.0)))
    anchors = [(k, float(np.mean(v))) for k, v in scores.items()]
    anchors.sort(key=lambda x: -x[1])
    keep = sum(1 for p in parsed if p.keep) >= len(parsed) // 2 + 1
    return Analysis(
        av_consistency=av,
        keep=keep,
        role_tags=tags,
        anchor_votes=[AnchorVote(anchor=k, score=v) for k, v in anchors],
        n_votes=len(votes),
        n_parsed=len(parsed),
    )


def clean_duet(analysis: Analysis) -> Analysis:
    """VGGSound-Duet's clean-up of an aggregate: tags cut to 32 chars, de-duplicated, first 4; anchors merged by max, top 5."""
    tags: list[str] = []
    for tag in analysis.role_tags:
        if (s := _name(tag)[:32]) and s not in tags:
            tags.append(s)
    merged: dict[str, float] = {}
    for a in analysis.anchor_votes:
        if name := _name(a.anchor)[:48]:
            merged[name] = max(merged.get(name, 0.0), float(np.clip(a.score, 0.0, 1.0)))
    anchors = sorted(merged.items(), key=lambda x: -x[1])[:5]
    return analysis.model_copy(
        update={
            "av_consistency": float(np.clip(analysis.av_consistency, 0.0, 1.0)),
            "role_tags": tags[:4],
            "anchor_votes": [AnchorVote(anchor=k, score=v) for k, v in anchors],
        }
    )


# --- stages ---------------------------------------------------------------------------------------


def _request(ctx: GarContext, state, stage: Stage, source: int | None, media, values: dict, **sampling) -> Request:
    template = f"{stage}.txt"
    system = ctx.prompts.render(f"system_{stage}.txt", source_number=(source or 0) + 1)
    return Request(
        stage,
        source,
        template,
        ctx.prompts.render(template, **values),
        media,
        system=system,
        max_tokens=state.settings.max_new_tokens,
        **sampling,
    )


def _locate(answer: str, k: int, width: int, height: int, sent: Sent = NOTHING_SENT) -> tuple[list[Box], list[Any]]:
    obj = _object(answer, "generate", sent)
    if k == 1:
        bbox, description = obj.get("bbox"), str(obj.get("description", "")).strip()
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise ScriptFailure("generate: no 4-element 'bbox' (Stage A: invalid bbox)")
        return [clip_box(_ints(bbox, "generate"), width, height)], [description]
    boxes, descriptions = obj.get("bboxes"), obj.get("descriptions", [""] * k)
    if not (isinstance(boxes, list) and len(boxes) == k and all(isinstance(b, list) and len(b) == 4 for b in boxes)):
        raise ScriptFailure(f"generate: 'bboxes' is not exactly {k} boxes of 4 numbers")
    if not (isinstance(descriptions, list) and len(descriptions) == k):
        descriptions = [""] * k
    # kept as the duet scripts keep them: any JSON value (null, a number), a string unstripped
    return [clip_box(_ints(b, "generate"), width, height) for b in boxes], descriptions


def _audio(answer: str, k: int, sent: Sent = NOTHING_SENT) -> tuple[list[str], list[float]]:
    obj = _object(answer, "audio", sent)
    if k == 1:
        name = str(obj.get("audio_class", "")).strip().lower() or "unknown"
        try:  # not clipped: the single-source scripts gate on the raw value
            confidence = float(obj.get("audio_confidence_score", 0.0))
        except (TypeError, ValueError, OverflowError):
            confidence = 0.0
        return [name], [confidence]
    classes = obj.get("audio_classes", ["unknown"] * k)
    confidences = obj.get("audio_confidence_scores", [0.0] * k)
    if not (isinstance(classes, list) and len(classes) == k):
        classes = ["unknown"] * k
    if not (isinstance(confidences, list) and len(confidences) == k):
        confidences = [0.0] * k
    names = [str(c).strip().lower() if c else "unknown" for c in classes]
    try:
        values = [float(x) if isinstance(x, (int, float)) else 0.0 for x in confidences]
    except OverflowError:  # an integer of hundreds of digits: float() raises in the script too
        raise ScriptFailure("audio: a confidence is too large for a float") from None
    return names, [float(np.clip(c, 0.0, 1.0)) for c in values]


def generate(state: RunState, ctx: GarContext) -> Generator[Request, ModelCall, dict]:
    """Stage A (boxes, image + audio) then Stage B (classes, audio only); pairing by list order.

    Yields each request (the node sends back its call) and returns the update.
    """
    k, image = state.settings.sources, state.image
    assert image is not None  # the generate node fills the frame from the run's media before asking
    # the scripts take a clip's sources one after another: the branches keep that order (and stop together)
    ctx.script_order = ScriptOrder(k) if k > 1 else None
    record = GenerateRecord(pairing="list order (the released code: box i goes with class i)")
    calls: list[ModelCall] = []
    call = yield _request(ctx, state, "generate", None, ("image", "audio"), {})
    calls.append(call)
    if call.error:
        return model_failed(record, calls, "box")
    try:
        boxes, descriptions = _locate(call.answers[0], k, image.width, image.height, call)
    except (ScriptFailure, *_DATA_ERRORS) as e:
        record.boxes.append(ParsedAnswer(raw=call.answers[0], error=str(e)))
        return ended(record, calls, f"{e}: the released code drops this sample")
    record.boxes.append(ParsedAnswer(raw=call.answers[0], value={"boxes": boxes, "descriptions": descriptions}))

    call = yield _request(ctx, state, "audio", None, ("audio",), {})
    calls.append(call)
    if call.error:
        return model_failed(record, calls, "audio")
    try:
        classes, confidences = _audio(call.answers[0], k, call)
    except (ScriptFailure, *_DATA_ERRORS) as e:
        record.audio.append(ParsedAnswer(raw=call.answers[0], error=str(e)))
        return ended(record, calls, f"{e}: the released code drops this sample")
    record.audio.append(ParsedAnswer(raw=call.answers[0], value={"classes": classes, "confidences": confidences}))
    sources = [
        SourceRecord(
            index=i,
            initial_box=boxes[i],
            box=boxes[i],
            description=descriptions[i],
            audio_class=classes[i],
            audio_confidence=confidences[i],
        )
        for i in range(k)
    ]
    return {"generate": record, "calls": calls, "sources": sources}


def _frame(state) -> dict:
    w, h = state.image.width, state.image.height
    return {"width": w, "height": h, "max_x": w - 1, "max_y": h - 1}


def analysis_request(state: SourceState, ctx: GarContext, n: int) -> Request:
    """One pass of votes on the source's own box, class and confidence (no peers: the scripts have none)."""
    src, settings = state.source, state.settings
    values = {
        "box": list(src.box),
        "audio_class": src.audio_class,
        "audio_confidence": src.audio_confidence,
        **_frame(state),
    }
    return _request(
        ctx,
        state,
        "analyze",
        src.index,
        ("image", "audio"),
        values,
        temperature=settings.vote_temperature,
        top_p=settings.vote_top_p,
        n=n,
    )


def finish_analysis(votes: list[Vote], ctx: GarContext) -> Analysis:
    """The aggregate the gate and Refine see (with VGGSound-Duet's clean-up where the set says so)."""
    analysis = aggregate(votes)
    return clean_duet(analysis) if ctx.prompts.cleanup == "vggss-duet" else analysis


def refine(state: SourceState, ctx: GarContext) -> tuple[Request, Any]:
    """The Refine request, and a resolver from its answer to the Refinement record."""
    src, (w, h) = state.source, (state.image.width, state.image.height)
    limit = max_delta(w, h)
    a = src.analysis
    values = {
        "box": list(src.box),
        "audio_class": src.audio_class,
        "max_delta": limit,
        "analysis_av_consistency": a.av_consistency if a else 0.0,
        "analysis_role_tags": list(a.role_tags) if a else [],
        "analysis_anchor_votes": [{"anchor": v.anchor, "score": v.score} for v in a.anchor_votes] if a else [],
        "analysis_keep": a.keep if a else False,
        **_frame(state),
    }
    request = _request(ctx, state, "refine", src.index, ("image", "audio"), values)

    def resolve(answer: str) -> Refinement:
        previous = list(src.box)
        applied: list[str] = []
        try:
            obj = _object(answer, "refine", request)
            bbox, changed, ops = obj.get("bbox"), obj.get("changed"), obj.get("ops")
            candidate = previous
            if ops:
                candidate = apply_ops(candidate, ops, w, h, limit)
                applied.append("ops")
            if isinstance(bbox, list) and len(bbox) == 4:
                candidate = clamp_delta(previous, clip_box(_ints(bbox, "refine"), w, h), limit, w, h)
                applied.append("bbox")
            description = str(obj.get("refined_description", "")).strip()
        except (ScriptFailure, *_DATA_ERRORS) as e:  # where int() raises in the scripts
            return Refinement(
                raw=answer,
                error=f"{e} (the released code keeps the previous box)",
                previous_box=previous,
                box=previous,
                max_delta=limit,
                applied="parse_error",
            )
        if changed is False:
            return Refinement(
                raw=answer,
                previous_box=previous,
                box=previous,
                max_delta=limit,
                applied="not_changed",
                refined_description=description,
            )
        return Refinement(
            raw=answer,
            previous_box=previous,
            box=candidate,
            max_delta=limit,
            applied="+".join(applied) or "unchanged",
            refined_description=description,
        )

    return request, resolve

"""Parse and validate each stage's model answer.

Models wrap JSON in code fences or prose, leave trailing commas, write numbers as strings, or drop
fields. Each `parse_*` returns `(value, None)` or `(None, "one-line reason")`; it never raises, so a
node can record the reason in the state and follow the method's rule for a failed answer.
"""

from __future__ import annotations

import math
import re
from typing import Any

import json_repair

from gar_agent.state import AnchorVote, RefineAnswer, RefineOps, VoteAnswer

MAX_ANCHORS = 5
MAX_TAGS = 4
# Far beyond any frame's pixel coordinates: a coordinate or offset past it is cut to it, so scaling,
# rounding and summing stay finite (clip_box puts the box inside the image either way).
COORD_LIMIT = 1e9
# What untrusted text can make Python raise while we read it: a number too large for a float, a
# number too long for str(), nesting deeper than the recursion limit.
DATA_ERRORS = (ValueError, OverflowError, RecursionError)

Parsed = tuple[Any, str | None]


class AnswerError(ValueError):
    """An answer that cannot be used; the message is one line."""


# --- JSON extraction ---------------------------------------------------------------------------

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


def extract_object(text: str, wanted: tuple[str, ...] = ()) -> dict:
    """The JSON object in a model answer, preferring one that has a `wanted` key."""
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("empty answer")
    fenced = _FENCE.findall(text)
    candidates: list[Any] = []
    for chunk in [*fenced, text]:
        start = chunk.find("{")
        if start < 0:
            continue
        # json_repair fixes trailing commas, single quotes, Python literals and cut-off endings;
        # several objects in one answer come back as a list.
        try:
            got = json_repair.loads(chunk[start:])
        except Exception:  # a heuristic repairer on arbitrary text: whatever it raises, this chunk gave nothing
            continue
        candidates.extend(got if isinstance(got, list) else [got])
    objects = [c for c in candidates if isinstance(c, dict)]
    if not objects:
        raise AnswerError("no JSON object found in the answer")
    for obj in objects:
        if any(k in obj for k in wanted):
            return obj
    return next((o for o in objects if o), objects[0])


# --- coercion ------------------------------------------------------------------------------------


def to_float(value: Any, field: str) -> float:
    """A finite number from a number or a numeric string ('0.8', '80%')."""
    if isinstance(value, bool):
        raise AnswerError(f"'{field}' is a boolean, expected a number")
    if isinstance(value, str):
        s = value.strip().rstrip(",")
        pct = s.endswith("%")
        try:
            out = float(s.rstrip("%")) / (100 if pct else 1)
        except ValueError:
            raise AnswerError(f"'{field}' is {value!r}, expected a number") from None
    elif isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise AnswerError(f"'{field}' is too large a number") from None
    else:
        raise AnswerError(f"'{field}' is {type(value).__name__}, expected a number")
    if not math.isfinite(out):
        raise AnswerError(f"'{field}' is not finite")
    return out


def to_bool(value: Any, field: str) -> bool:
    """A boolean from true/false, 'yes'/'no', 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise AnswerError(f"'{field}' is {value!r}, expected true or false")


def to_box(value: Any, field: str) -> list[float]:
    """Four numbers [x1, y1, x2, y2]; also accepts a one-box list or an {x1,y1,x2,y2} object."""
    if isinstance(value, dict) and all(k in value for k in ("x1", "y1", "x2", "y2")):
        value = [value["x1"], value["y1"], value["x2"], value["y2"]]
    if isinstance(value, str):
        value = re.findall(r"-?\d+(?:\.\d+)?", value)
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or len(value) != 4:
        raise AnswerError(f"'{field}' is not a list of 4 numbers")
    return [to_coord(v, field) for v in value]


def to_coord(value: Any, field: str) -> float:
    """A finite number cut to +-COORD_LIMIT (a pixel coordinate or offset)."""
    return min(max(to_float(value, field), -COORD_LIMIT), COORD_LIMIT)


def to_text(value: Any) -> str:
    """A one-line string from whatever came back."""
    if value is None:
        return ""
    try:
        text = str(value)
    except ValueError:  # an integer past Python's 4,300-digit str() limit
        text = "<a number too long to show>"
    return " ".join(text.split())


def _field(obj: dict, *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    raise AnswerError(f"field '{names[0]}' is missing")


def _as_list(value: Any, field: str, k: int) -> list:
    if k == 1 and not (isinstance(value, list) and value and isinstance(value[0], (list, dict))):
        value = [value] if not (isinstance(value, list) and len(value) == 1) else value
    if not isinstance(value, list):
        raise AnswerError(f"'{field}' is not a list")
    if len(value) != k:
        raise AnswerError(f"'{field}' has {len(value)} items, expected {k}")
    return value


def _safe(fn) -> Parsed:
    """Run a stage's parser: its value, or the reason the answer is unusable (never an exception)."""
    try:
        return fn(), None
    except AnswerError as e:
        return None, str(e)
    except DATA_ERRORS as e:  # the answer's data, not our code: e.g. nesting past the recursion limit
        return None, f"unreadable answer ({type(e).__name__}: {' '.join(str(e).split())[:80]})"


# --- stages --------------------------------------------------------------------------------------


def parse_boxes(text: str, k: int) -> Parsed:
    """Generate's box answer -> {"boxes": K x [x1,y1,x2,y2], "descriptions": K strings}."""

    def run():
        obj = extract_object(text, ("bbox", "bboxes"))
        raw_boxes = _field(obj, "bboxes", "bbox") if k > 1 else _field(obj, "bbox", "bboxes")
        if k > 1 or (isinstance(raw_boxes, list) and raw_boxes and isinstance(raw_boxes[0], list)):
            boxes = [to_box(b, "bboxes") for b in _as_list(raw_boxes, "bboxes", k)]
        else:
            boxes = [to_box(raw_boxes, "bbox")]
        descs = obj.get("descriptions", obj.get("description", [""] * k))
        descs = descs if isinstance(descs, list) else [descs]
        descs = [to_text(d) for d in descs[:k]] + [""] * (k - len(descs))
        return {"boxes": boxes, "descriptions": descs}

    return _safe(run)


def parse_audio(text: str, k: int) -> Parsed:
    """Generate's audio answer -> {"classes": K names, "confidences": K values in [0,1]}."""

    def run():
        obj = extract_object(text, ("audio_class", "audio_classes"))
        names = ("audio_classes", "audio_class") if k > 1 else ("audio_class", "audio_classes")
        classes = _as_list(_field(obj, *names), names[0], k)
        confs_raw = _field(
            obj,
            *(
                ("audio_confidence_scores", "audio_confidence_score")
                if k > 1
                else ("audio_confidence_score", "audio_confidence_scores")
            ),
        )
        confs = _as_list(confs_raw, "audio_confidence_scores" if k > 1 else "audio_confidence_score", k)
        return {
            "classes": [to_text(c).lower() or "unknown" for c in classes],
            "confidences": [min(max(to_float(c, "audio_confidence_score"), 0.0), 1.0) for c in confs],
        }

    return _safe(run)


def _anchor_votes(value: Any) -> list[AnchorVote]:
    if value is None:
        return []
    if isinstance(value, dict):  # {"bow_on_strings": 0.9, ...}
        value = [{"anchor": k, "score": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise AnswerError("'anchor_votes' is not a list")
    out = []
    for item in value:
        if isinstance(item, dict) and "anchor" in item:
            out.append(AnchorVote(anchor=to_text(item["anchor"]), score=to_float(item.get("score", 0), "score")))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append(AnchorVote(anchor=to_text(item[0]), score=to_float(item[1], "score")))
        else:
            raise AnswerError("an 'anchor_votes' item is not {anchor, score}")
    return out[:MAX_ANCHORS]


def _role_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        raise AnswerError("'role_tags' is not a list")
    return [to_text(t) for t in value if to_text(t)][:MAX_TAGS]


def parse_vote(text: str) -> Parsed:
    """One analysis pass -> VoteAnswer (av_consistency and keep are required)."""

    def run():
        obj = extract_object(text, ("av_consistency", "keep"))
        return VoteAnswer(
            av_consistency=to_float(_field(obj, "av_consistency"), "av_consistency"),
            keep=to_bool(_field(obj, "keep"), "keep"),
            role_tags=_role_tags(obj.get("role_tags")),
            anchor_votes=_anchor_votes(obj.get("anchor_votes")),
        )

    return _safe(run)


def _ops(value: Any) -> RefineOps | None:
    if value in (None, "null", "none", ""):
        return None
    if not isinstance(value, dict) or "type" not in value:
        raise AnswerError("'ops' is not an object with a 'type'")
    kind = to_text(value["type"]).lower()
    if kind not in ("delta", "expand", "shrink", "recenter"):
        raise AnswerError(f"'ops.type' is {kind!r}, expected delta, expand, shrink or recenter")
    nums = {k: to_coord(value[k], f"ops.{k}") for k in ("dx", "dy", "dl", "dr", "dt", "db", "amount") if k in value}
    target = None
    if kind == "recenter":
        t = value.get("target")
        if not isinstance(t, list) or len(t) != 2:
            raise AnswerError("'ops.target' is not [cx, cy]")
        target = [to_coord(v, "ops.target") for v in t]
    return RefineOps(type=kind, target=target, **nums)


def parse_refine(text: str) -> Parsed:
    """Refine's answer -> RefineAnswer; a box that is not 4 numbers is ignored, as in the code."""

    def run():
        obj = extract_object(text, ("bbox", "changed", "ops"))
        if not any(k in obj for k in ("bbox", "changed", "ops")):
            raise AnswerError("none of 'bbox', 'changed', 'ops' in the answer")
        try:
            bbox = to_box(obj["bbox"], "bbox") if obj.get("bbox") is not None else None
        except AnswerError:
            bbox = None
        # Malformed or unknown ops are ignored and the bbox still applies (the code's resolution order).
        try:
            ops, ops_error = _ops(obj.get("ops")), None
        except AnswerError as e:
            ops, ops_error = None, f"ops ignored: {e}"
        return RefineAnswer(
            bbox=bbox,
            changed=to_bool(obj.get("changed", True), "changed"),
            ops=ops,
            refined_description=to_text(obj.get("refined_description", "")),
            ops_error=ops_error,
        )

    return _safe(run)

"""The method's pure rules (METHOD.md): box hygiene, vote aggregation, the gate, refinement clamps, box IoU.

No I/O and no model here, so every number the paper's method defines is tested directly.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence

from gar_agent.state import (
    Analysis,
    AnchorVote,
    Box,
    GateDecision,
    RefineAnswer,
    RefineOps,
    Settings,
    Vote,
)

MAX_TAGS = 4
ANCHOR_NAME_LEN = 48


# --- boxes -----------------------------------------------------------------------------------


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """Round, re-order corners, clip into the image, and grow a zero-size box by one pixel."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    x1, x2 = (min(max(v, 0), width - 1) for v in (x1, x2))
    y1, y2 = (min(max(v, 0), height - 1) for v in (y1, y2))
    # Grow inward at the image border so the box stays inside it.
    if x1 == x2:
        x1, x2 = (x1 - 1, x2) if x2 == width - 1 else (x1, x2 + 1)
    if y1 == y2:
        y1, y2 = (y1 - 1, y2) if y2 == height - 1 else (y1, y2 + 1)
    return [x1, y1, x2, y2]


def gar_clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """The released scripts' clip_box: each corner clipped into [0, side-1] (np.clip, then int), corners
    re-ordered, a zero-size side grows by one pixel, capped at the border (where it stays zero-size).

    Protocol `reference` clips boxes with it; the metrics put boxes on the 224 grid with it.
    """
    # np.clip then int, in plain Python (the same for any number; a NaN fails in both): np.clip on a
    # scalar costs microseconds, and the metrics call this for every box of every sample
    x1, y1, x2, y2 = (int(min(max(v, 0), side - 1)) for v, side in zip(box, (width, height, width, height)))
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    if x2 == x1:
        x2 = min(x1 + 1, width - 1)
    if y2 == y1:
        y2 = min(y1 + 1, height - 1)
    return [x1, y1, x2, y2]


def scale_box(box: Sequence[float], src: tuple[int, int], dst: tuple[int, int]) -> list[float]:
    """Map a box from a (width, height) frame to another (e.g. the model's resized frame)."""
    (sw, sh), (dw, dh) = src, dst
    return [box[0] * dw / sw, box[1] * dh / sh, box[2] * dw / sw, box[3] * dh / sh]


def max_delta(width: int, height: int) -> int:
    """The most any side may move in one refinement: max(4, round(0.08 * min(W, H)))."""
    return max(4, int(round(0.08 * min(width, height))))


def clamp_box(candidate: Sequence[float], previous: Sequence[float], limit: int) -> tuple[list[float], bool]:
    """Keep every side within +-limit of the previous box; also say whether anything was cut."""
    out = [min(max(c, p - limit), p + limit) for c, p in zip(candidate, previous)]
    return out, any(o != c for o, c in zip(out, candidate))


def apply_ops(box: Sequence[float], ops: RefineOps) -> list[float]:
    """Apply one refinement operation to a box (no clipping or clamping)."""
    x1, y1, x2, y2 = box
    if ops.type == "delta":
        return [x1 + ops.dx + ops.dl, y1 + ops.dy + ops.dt, x2 + ops.dx + ops.dr, y2 + ops.dy + ops.db]
    if ops.type in ("expand", "shrink"):
        a = abs(ops.amount) if ops.type == "expand" else -abs(ops.amount)
        return [x1 - a, y1 - a, x2 + a, y2 + a]
    # recenter: same half-size around the target centre
    cx, cy = (ops.target or [(x1 + x2) / 2, (y1 + y2) / 2])[:2]
    hw, hh = (x2 - x1) / 2, (y2 - y1) / 2
    return [cx - hw, cy - hh, cx + hw, cy + hh]


def resolve_refinement(
    answer: RefineAnswer | None,
    previous: Box,
    width: int,
    height: int,
    model_frame: tuple[int, int] | None = None,
) -> tuple[Box, str, bool]:
    """The released code's resolution order: ops, then bbox, then `changed: false` keeps the box.

    `answer` coordinates are in `model_frame` (default: the image's own); the result is in image
    pixels, clipped and clamped to +-max_delta per side. Returns (box, what was applied, clamped).
    """
    if answer is None:
        return list(previous), "parse_error", False
    frame = model_frame or (width, height)
    image = (width, height)
    limit = max_delta(width, height)
    box, applied, clamped = list(previous), [], False

    def settle(candidate_model: Sequence[float]) -> Box:
        nonlocal clamped
        candidate = scale_box(candidate_model, frame, image)
        candidate, cut = clamp_box(clip_box(candidate, width, height), previous, limit)
        clamped = clamped or cut
        return clip_box(candidate, width, height)

    if answer.ops is not None:
        box = settle(apply_ops(scale_box(previous, image, frame), answer.ops))
        applied.append("ops")
    if answer.bbox is not None and len(answer.bbox) == 4:
        box = settle(answer.bbox)
        applied.append("bbox")
    if not answer.changed:
        return list(previous), "not_changed", False
    return box, "+".join(applied) or "unchanged", clamped


# --- votes -------------------------------------------------------------------------------------


def normalize_name(name: str, limit: int | None = None) -> str:
    """Lowercase; runs of spaces/hyphens become one underscore; optionally cut to `limit` chars."""
    out = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return out[:limit] if limit else out


def clip01(x: float) -> float:
    """Clip into [0, 1]; NaN counts as 0."""
    return 0.0 if math.isnan(x) else min(max(float(x), 0.0), 1.0)


def aggregate_votes(votes: list[Vote]) -> Analysis:
    """Aggregate the parsed votes: mean av, strict-majority keep, top-4 tags, mean per anchor."""
    parsed = [v.parsed for v in votes if v.parsed is not None]
    n = len(parsed)
    if n == 0:
        return Analysis(av_consistency=0.0, keep=False, role_tags=[], anchor_votes=[], n_votes=len(votes), n_parsed=0)
    av = sum(clip01(p.av_consistency) for p in parsed) / n
    keep = sum(p.keep for p in parsed) >= n // 2 + 1
    tags = Counter(normalize_name(t) for p in parsed for t in p.role_tags if normalize_name(t))
    # Counter.most_common keeps first-seen order among ties, so ties resolve by first appearance.
    role_tags = [t for t, _ in tags.most_common(MAX_TAGS)]
    scores: dict[str, list[float]] = defaultdict(list)
    for p in parsed:
        for a in p.anchor_votes:
            name = normalize_name(a.anchor, ANCHOR_NAME_LEN)
            if name:
                scores[name].append(clip01(a.score))
    anchors = [AnchorVote(anchor=k, score=sum(v) / len(v)) for k, v in scores.items()]
    anchors.sort(key=lambda a: -a.score)  # stable: equal scores keep first-seen order
    return Analysis(
        av_consistency=av,
        keep=keep,
        role_tags=role_tags,
        anchor_votes=anchors,
        n_votes=len(votes),
        n_parsed=n,
    )


# --- gate --------------------------------------------------------------------------------------


def gate(analysis: Analysis, audio_confidence: float, settings: Settings) -> GateDecision:
    """Skip refinement iff keep and av >= tau_av and audio_conf >= tau_audio (equality passes)."""
    reasons = []
    if not analysis.keep:
        reasons.append("keep is false")
    if not analysis.av_consistency >= settings.tau_av:
        reasons.append(f"av_consistency {analysis.av_consistency:.3f} < tau_av {settings.tau_av}")
    if not audio_confidence >= settings.tau_audio:
        reasons.append(f"audio_confidence {audio_confidence:.3f} < tau_audio {settings.tau_audio}")
    return GateDecision(
        keep=analysis.keep,
        av_consistency=analysis.av_consistency,
        audio_confidence=audio_confidence,
        tau_av=settings.tau_av,
        tau_audio=settings.tau_audio,
        refine=bool(reasons),
        reasons=reasons,
    )


# GAR measures boxes on a 224 x 224 grid (its masks); box_to_grid and box_iou put boxes there.
MASK_SIZE = 224


def box_to_grid(
    box_norm: Sequence[float], size: int = MASK_SIZE, image_size: Sequence[int] | None = None
) -> tuple[int, int, int, int]:
    """Normalised xyxy -> integer corners on the size x size grid, the way GAR scales boxes to 224.

    With `image_size` (W, H), exactly as GAR's scripts do it: the box is first made image pixels
    (`round(v * W)`, which for a prediction gives back its integer pixels), clipped into the image
    by their `clip_box`, then scaled with `round(px * (224 / W))` and clipped into the grid. A GT box
    is therefore rounded twice, to pixels and then to the grid.

    Without it (sample files written before the image size was stored), one rounding:

    GAR: `int(round(v * 224 / W))` then `clip_box(.., 224, 224)`: clip into [0, size-1], re-order the
    corners, and a zero-width/height box grows by one pixel (x2 = min(x1 + 1, size - 1)).
    Rounding is Python's `round` (half-to-even), as in GAR; `round(.., 9)` first removes float noise
    (e.g. 0.49999999999999994 from px / W * 224) so an exact half rounds to even. Where GAR's own
    px * (224 / W) carries that noise (e.g. W=1280, px=180 -> 31.499999999999996 -> 31) it can land
    one pixel apart from us (32); elsewhere the masks are identical (tests/test_metrics.py).
    """
    vals = [float(v) for v in box_norm]
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"a box needs 4 finite numbers, got {list(box_norm)!r}")
    if image_size is not None:
        w, h = image_size
        px = gar_clip_box([round(v * side) for v, side in zip(vals, (w, h, w, h))], w, h)
        x1, y1, x2, y2 = gar_clip_box([round(v * (size / side)) for v, side in zip(px, (w, h, w, h))], size, size)
    else:
        x1, y1, x2, y2 = gar_clip_box([round(round(v * size, 9)) for v in vals], size, size)
    return x1, y1, x2, y2


def box_iou(
    a: Sequence[float], b: Sequence[float], size: int | None = MASK_SIZE, image_size: Sequence[int] | None = None
) -> float:
    """IoU of two normalised xyxy boxes.

    With `size` (default 224) the boxes are first put on the size x size grid like the masks and
    measured in inclusive pixels, as GAR's duet code does (`iou_xyxy` with +1 widths on the
    224-pixel boxes). With size=None: plain continuous IoU of the coordinates as given.
    """
    if size is not None:
        a, b = box_to_grid(a, size, image_size), box_to_grid(b, size, image_size)
        extra = 1.0
    else:
        extra = 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1) + extra)
    ih = max(0.0, min(ay2, by2) - max(ay1, by1) + extra)
    inter = iw * ih
    area_a = max(0.0, ax2 - ax1 + extra) * max(0.0, ay2 - ay1 + extra)
    area_b = max(0.0, bx2 - bx1 + extra) * max(0.0, by2 - by1 + extra)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0

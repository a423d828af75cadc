"""Localization metrics of the GAR protocol: box masks, cIoU, success rate / AUC, AP, PIAP, duet IoU.

Pure functions (no I/O, no model). The conventions follow the released GAR-SSL code
(github.com/VisualAIKHU/GAR-SSL, `code/GAR_vggss_single.py`, `GAR_vggss_duet.py`, `code/bbox_utils.py`,
`code/evaluator.py`); where AVGN / LVS evaluation code differs it is said next to the code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

# the grid and the IoU of two boxes are rules (gar_agent/rules.py): `trace diff` and the CLI use them
# without the metrics' numerical stack; they stay importable from here
from gar_agent.rules import MASK_SIZE, box_iou, box_to_grid  # noqa: F401

# GAR: `np.linspace(0, 1, 21)` + `sklearn.metrics.auc` (trapezoid); the same 21 thresholds as LVS/AVGN.
THRESHOLDS = np.linspace(0.0, 1.0, 21)

Box = Sequence[float]


def normalize_box(box_px: Box, width: int, height: int) -> list[float]:
    """Pixel xyxy box of a width x height image -> normalised xyxy (divided by the image size)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    x1, y1, x2, y2 = (float(v) for v in box_px)
    return [x1 / width, y1 / height, x2 / width, y2 / height]


def boxes_to_mask(
    boxes_norm_xyxy: Iterable[Box], size: int = MASK_SIZE, image_size: Sequence[int] | None = None
) -> np.ndarray:
    """All boxes of one sample drawn as one filled binary float32 mask of size x size.

    GAR draws with `cv2.rectangle(mask, (x1, y1), (x2, y2), 1, -1)`: filled, right/bottom edges
    INCLUSIVE, so a box covers (x2 - x1 + 1) x (y2 - y1 + 1) pixels. (AVGN/LVS differ:
    `int(v * 224)` truncation and an exclusive slice `gt_map[ymin:ymax, xmin:xmax] = 1`.)
    """
    mask = np.zeros((size, size), dtype=np.float32)
    for box in boxes_norm_xyxy:
        x1, y1, x2, y2 = box_to_grid(box, size, image_size)
        mask[y1 : y2 + 1, x1 : x2 + 1] = 1.0
    return mask


def ciou(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """cIoU = sum(P*G) / (sum(G) + sum(P*(G==0))), P binarised at 0.5 (GAR `Evaluator.cal_CIOU`).

    In float32, as GAR computes it for the paper's numbers in both protocols: its masks are float32,
    so the pixel sums and their quotient are float32 (NumPy >= 2 keeps `+ 1e-8` in float32, where
    it changes nothing for a non-empty denominator). That is not noise: an exact 0.3 is stored as
    float32(0.3) > 0.30000000000000004, the float64 linspace threshold, so it counts at 0.3, while
    float32(0.45) < 0.45 does not count at 0.45 (AUC moves by 0.05 / n per such clip). Pixel counts
    are exact in float32 up to 2**24. An empty denominator (no GT, no prediction) gives 0.0.
    """
    p = (np.asarray(pred_mask) >= 0.5).astype(np.float32)
    g = np.asarray(gt_mask, dtype=np.float32)
    den = g.sum(dtype=np.float32) + (p * (g == 0)).sum(dtype=np.float32)
    return float((p * g).sum(dtype=np.float32) / den) if den > 0 else 0.0


def success_rate(cious: Sequence[float], t: float) -> float:
    """Fraction of samples with cIoU >= t (the literature's "cIoU@t"); nan when there are none."""
    arr = np.asarray(cious, dtype=np.float64)
    return float(np.mean(arr >= t)) if arr.size else float("nan")


def auc(cious: Sequence[float]) -> float:
    """Trapezoid area under the success rate over the 21 thresholds 0, 0.05, ..., 1 (nan if empty)."""
    arr = np.asarray(cious, dtype=np.float64)
    if not arr.size:
        return float("nan")
    rates = np.array([np.mean(arr >= t) for t in THRESHOLDS])
    # Same as sklearn.metrics.auc(THRESHOLDS, rates), written out to stay dependency-light.
    return float(np.sum((rates[1:] + rates[:-1]) * np.diff(THRESHOLDS)) / 2.0)


def _is_binary(p: np.ndarray) -> bool:
    return bool(np.all((p == 0) | (p == 1)))


def _score_counts(gt_mask: np.ndarray, pred_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct prediction scores ascending, GT-positive pixels at each, GT-negative pixels at each)."""
    g = np.asarray(gt_mask).ravel() > 0.5
    p = np.asarray(pred_mask, dtype=np.float64).ravel()
    if _is_binary(p):  # the usual case (box masks): two counts, no sort
        on = p == 1
        n_on, tp = int(np.count_nonzero(on)), int(np.count_nonzero(g & on))
        n_pos = int(np.count_nonzero(g))
        return (
            np.array([0.0, 1.0]),
            np.array([n_pos - tp, tp]),
            np.array([p.size - n_on - (n_pos - tp), n_on - tp]),
        )
    scores, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=g, minlength=scores.size).astype(np.int64)
    return scores, pos, np.bincount(inverse, minlength=scores.size) - pos


def _ap_from_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    """Step AP, sklearn's definition: over distinct scores, high to low, the sum of dRecall * Precision.

    `pos` / `neg` count the pixels at each distinct score in ascending score order (np.unique's;
    PixelPool sorts its keys): they are walked from the end.
    """
    keep = (pos + neg) > 0
    pos, neg = pos[keep], neg[keep]
    tp, fp = np.cumsum(pos[::-1]), np.cumsum(neg[::-1])
    if not tp.size or tp[-1] == 0:
        return 0.0
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def average_precision(gt_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """Per-sample AP: sklearn `average_precision_score(G.flatten(), P.flatten())` as GAR calls it.

    For a binary P (box masks) the same value is computed from four pixel counts, which is exact and
    ~50x faster (tests compare it with sklearn): prec(P) * rec(P) + (1 - rec(P)) * |G| / N, so AP
    partly rewards big boxes. An all-zero GT has no positive pixel and AP is undefined: we return
    0.0, what sklearn >= 1.x returns (with a warning we avoid by not calling it).
    """
    g = np.asarray(gt_mask).ravel() > 0.5
    p = np.asarray(pred_mask, dtype=np.float64).ravel()
    if not g.any():
        return 0.0
    if _is_binary(p):
        return _ap_from_counts(*_score_counts(g, p)[1:])
    # sklearn only for soft masks: importing it costs ~1 s of start-up that box-mask metrics never need
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(g.astype(np.int8), p))


class PixelPool:
    """Pixel counts per prediction score, pooled over samples: PIAP without keeping any mask."""

    def __init__(self) -> None:
        self.pos: dict[float, int] = {}
        self.neg: dict[float, int] = {}

    def add(self, gt_mask: np.ndarray, pred_mask: np.ndarray) -> None:
        """Pool one sample's pixels."""
        for score, n_pos, n_neg in zip(*_score_counts(gt_mask, pred_mask)):
            self.pos[float(score)] = self.pos.get(float(score), 0) + int(n_pos)
            self.neg[float(score)] = self.neg.get(float(score), 0) + int(n_neg)

    def ap(self) -> float:
        """AP of everything pooled; 0.0 when no GT pixel is positive."""
        if not self.pos:
            return 0.0
        keys = sorted(self.pos)
        return _ap_from_counts(np.array([self.pos[k] for k in keys]), np.array([self.neg[k] for k in keys]))


def piap(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """Pooled AP: one `average_precision_score` over every sample's (gt, pred) pixels together.

    GAR concatenates all pixels (5,158 x 224 x 224 values for VGG-SS); we pool pixel counts per
    distinct score instead: sklearn's value exactly, with O(distinct scores) memory.
    0.0 when no pixel of any GT is positive.
    """
    pool = PixelPool()
    for gt_mask, pred_mask in pairs:
        pool.add(gt_mask, pred_mask)
    return pool.ap()


def matched_ious(
    pred_boxes: Sequence[Box],
    gt_boxes: Sequence[Box],
    size: int | None = MASK_SIZE,
    image_size: Sequence[int] | None = None,
) -> tuple[list[float], float]:
    """Best one-to-one matching of predictions to GT boxes by IoU (any K, `linear_sum_assignment`).

    Returns the IoU of each GT box with its matched prediction, in GT order (0.0 for a GT box left
    unmatched when there are fewer predictions), and their mean. GAR does this for K=2 by comparing
    the two assignments' IoU sums and, with one GT box, takes the better prediction: same result.
    """
    if not gt_boxes:
        return [], float("nan")
    per_gt = [0.0] * len(gt_boxes)
    if pred_boxes:
        from scipy.optimize import linear_sum_assignment  # duets only: scipy is seconds of start-up on a busy machine

        iou = np.array([[box_iou(p, g, size, image_size) for g in gt_boxes] for p in pred_boxes])
        rows, cols = linear_sum_assignment(iou, maximize=True)
        for r, c in zip(rows, cols):
            per_gt[c] = float(iou[r, c])
    return per_gt, float(np.mean(per_gt))


class SampleScore(BaseModel):
    """What a stored per-sample result needs so every metric can be recomputed (no masks kept).

    Boxes are normalised xyxy; pred_boxes is in prediction (source) order, gt_boxes in GT order.
    """

    id: str
    failed: bool = False
    error: str | None = None
    pred_boxes: list[list[float]] = Field(default_factory=list)
    gt_boxes: list[list[float]] = Field(default_factory=list)
    refined: int = 0  # sources that went through the refine stage
    skipped: int = 0  # sources whose refinement the gate skipped
    image_size: list[int] | None = None  # (W, H) of the frame: boxes go to the grid as GAR's code does

    def masks(self, size: int = MASK_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """(gt_mask, pred_mask); a failed sample has an empty prediction mask."""
        pred = [] if self.failed else self.pred_boxes
        return boxes_to_mask(self.gt_boxes, size, self.image_size), boxes_to_mask(pred, size, self.image_size)

    def metrics(self, size: int = MASK_SIZE) -> dict:
        """This sample's cIoU, AP and (with several GT boxes and predictions) matched IoUs."""
        gt, pred = self.masks(size)
        out: dict[str, Any] = {"ciou": ciou(pred, gt), "ap": average_precision(gt, pred)}
        per, mean = matched_ious([] if self.failed else self.pred_boxes, self.gt_boxes, size, self.image_size)
        out.update(per_source_iou=per, matched_mean_iou=mean)
        return out


def summarize(records: Sequence[SampleScore], duet: bool, strict: bool = False, size: int = MASK_SIZE) -> dict:
    """Benchmark numbers from per-sample records; metrics are fractions in [0, 1].

    Non-strict (GAR code): a failed sample is left out of every metric. strict=True: it counts as a
    miss, an empty prediction mask (cIoU 0; its AP is then |G|/N, what sklearn gives a constant
    score). Metrics are None when no sample is evaluated. refined/skipped are summed over all records.
    """
    used = [r for r in records if strict or not r.failed]
    cious: list[float] = []
    aps: list[float] = []
    pool = PixelPool()  # masks are not kept: 5,158 pairs of 224x224 floats would be 2 GB
    matched: list[float] = []
    for r in used:
        gt, pred = r.masks(size)
        cious.append(ciou(pred, gt))
        aps.append(average_precision(gt, pred))
        pool.add(gt, pred)
        if duet:
            matched.append(matched_ious([] if r.failed else r.pred_boxes, r.gt_boxes, size, r.image_size)[1])

    def value(x: float) -> float | None:
        return None if not used or math.isnan(x) else float(x)

    out = {
        "n_total": len(records),
        "n_evaluated": len(used),
        "n_failed": sum(r.failed for r in records),
        "ciou@0.3": value(success_rate(cious, 0.3)),
        "ciou@0.5": value(success_rate(cious, 0.5)),
        "auc": value(auc(cious)),
        "ap": value(float(np.mean(aps)) if aps else float("nan")),
        "piap": value(pool.ap()) if used else None,
        "refined": sum(r.refined for r in records),
        "skipped": sum(r.skipped for r in records),
    }
    if duet:
        valid = [m for m in matched if not math.isnan(m)]
        out["matched_mean_iou"] = value(float(np.mean(valid)) if valid else float("nan"))
    return out

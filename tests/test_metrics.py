"""Metrics of the GAR protocol against hand-computed values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import average_precision_score

from gar_agent.eval.metrics import (
    THRESHOLDS,
    SampleScore,
    auc,
    average_precision,
    box_iou,
    box_to_grid,
    boxes_to_mask,
    ciou,
    matched_ious,
    normalize_box,
    piap,
    success_rate,
    summarize,
)

HALF = [0.0, 0.0, 0.5, 0.5]  # on 224: corners (0,0)-(112,112), inclusive -> 113 x 113 pixels
SHIFTED = [0.25, 0.0, 0.75, 0.5]  # corners (56,0)-(168,112): 113 x 113, overlapping HALF on 57 x 113


def test_mask_is_inclusive_like_cv2_rectangle():
    assert boxes_to_mask([HALF]).sum() == 113 * 113
    assert boxes_to_mask([[0, 0, 1, 1]]).sum() == 224 * 224
    assert boxes_to_mask([]).sum() == 0
    # several boxes of one sample share one binary mask (overlap counted once)
    assert boxes_to_mask([HALF, SHIFTED]).sum() == 113 * 113 * 2 - 57 * 113
    assert boxes_to_mask([HALF]).dtype == np.float32


def test_grid_rounding_clipping_and_degenerate_boxes():
    # reversed corners are re-ordered; a zero-size box grows by one pixel (GAR clip_box)
    assert box_to_grid([0.75, 0.5, 0.25, 0.0]) == (56, 0, 168, 112)
    assert box_to_grid([0.5, 0.5, 0.5, 0.5]) == (112, 112, 113, 113)
    assert boxes_to_mask([[0.5, 0.5, 0.5, 0.5]]).sum() == 4
    assert box_to_grid([-0.2, -1.0, 1.3, 2.0]) == (0, 0, 223, 223)
    with pytest.raises(ValueError):
        box_to_grid([0, 0, float("nan"), 1])


def test_pixel_boxes_round_half_to_even_like_gar():
    # W=448: GAR computes round(px * 224/448) = round(px / 2): 0.5 -> 0 and 1.5 -> 2
    norm = normalize_box([1, 0, 3, 1], 448, 224)
    assert norm == pytest.approx([1 / 448, 0.0, 3 / 448, 1 / 224])
    assert box_to_grid(norm) == (0, 0, 2, 1)
    with pytest.raises(ValueError):
        normalize_box([0, 0, 1, 1], 0, 10)


def test_ciou_exact_value():
    gt, pred = boxes_to_mask([HALF]), boxes_to_mask([SHIFTED])
    assert ciou(pred, gt) == pytest.approx(57 * 113 / (113 * 113 + 56 * 113))
    assert ciou(gt, gt) == 1.0
    assert ciou(np.zeros_like(gt), gt) == 0.0
    assert ciou(np.zeros_like(gt), np.zeros_like(gt)) == 0.0  # nothing to find, nothing found
    # the prediction is binarised at 0.5
    assert ciou(gt * 0.49, gt) == 0.0 and ciou(gt * 0.5, gt) == 1.0


def test_success_rate_and_auc_by_hand():
    cious = [0.0, 0.42, 1.0]
    assert success_rate(cious, 0.3) == pytest.approx(2 / 3)
    assert success_rate(cious, 0.5) == pytest.approx(1 / 3)
    # rates: 1 at t=0, 2/3 for t=0.05..0.40, 1/3 for t=0.45..1.0 -> trapezoid sum 29/3 * 0.05
    assert auc(cious) == pytest.approx(29 / 60)
    rates = [np.mean(np.array(cious) >= t) for t in THRESHOLDS]
    assert auc(cious) == pytest.approx(sk_auc(THRESHOLDS, rates))
    assert auc([1.0, 1.0]) == pytest.approx(1.0)
    assert auc([0.0]) == pytest.approx(0.025)  # every cIoU >= 0: half a step at t=0
    assert np.isnan(auc([])) and np.isnan(success_rate([], 0.5))


def test_average_precision_by_hand():
    g = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    p = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32)
    # precision(P) * recall(P) + (1 - recall(P)) * |G| / N = 0.5 * 0.5 + 0.5 * 0.2
    assert average_precision(g, p) == pytest.approx(0.35)
    assert average_precision(g, p) == pytest.approx(average_precision_score(g, p))
    assert average_precision(g, np.zeros_like(p)) == pytest.approx(0.2)  # empty prediction: |G| / N
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the all-zero GT case must not reach sklearn's warning
        assert average_precision(np.zeros_like(g), p) == 0.0


def test_average_precision_equals_sklearn():
    rng = np.random.default_rng(2)
    for _ in range(20):
        g = (rng.random((16, 16)) < rng.random()).astype(np.float32)
        g[0, 0] = 1
        p_bin = (rng.random((16, 16)) < rng.random()).astype(np.float32)  # counted fast path
        p_soft = rng.integers(0, 5, (16, 16)) / 4.0  # non-binary: sklearn itself
        for p in (p_bin, p_soft, np.ones_like(p_bin), np.zeros_like(p_bin)):
            assert average_precision(g, p) == pytest.approx(average_precision_score(g.ravel(), p.ravel()))


def test_piap_pools_pixels_and_differs_from_mean_ap():
    g1 = np.zeros(10)
    g1[0] = 1
    p1 = g1.copy()  # hit: AP 1
    g2 = np.zeros(10)
    g2[0] = 1
    p2 = np.zeros(10)
    p2[5] = 1  # miss: AP = |G|/N = 0.1
    aps = [average_precision(g1, p1), average_precision(g2, p2)]
    assert aps == pytest.approx([1.0, 0.1])
    # pooled: 2 predicted pixels, 1 right -> 0.5 * 0.5 + 0.5 * 2/20
    assert piap([(g1, p1), (g2, p2)]) == pytest.approx(0.30)
    assert np.mean(aps) == pytest.approx(0.55)


def test_piap_equals_sklearn_on_concatenated_pixels():
    rng = np.random.default_rng(0)
    pairs = [((rng.random(64) < 0.3).astype(float), (rng.random(64) < 0.4).astype(float)) for _ in range(5)]
    pairs.append((np.zeros(64), rng.integers(0, 4, 64) / 3.0))  # non-binary scores, no positives
    g = np.concatenate([a for a, _ in pairs])
    p = np.concatenate([b for _, b in pairs])
    assert piap(pairs) == pytest.approx(average_precision_score(g, p))
    assert piap([(np.zeros(4), np.ones(4))]) == 0.0


def test_box_iou_grid_and_continuous():
    assert box_iou(HALF, SHIFTED) == pytest.approx(57 * 113 / (2 * 113 * 113 - 57 * 113))
    assert box_iou(HALF, SHIFTED, size=None) == pytest.approx(1 / 3)
    assert box_iou(HALF, [0.6, 0.6, 1, 1], size=None) == 0.0


def test_matched_ious_picks_the_swap():
    gt = [[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]
    pred = [[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.25]]  # predictions in the other order
    per, mean = matched_ious(pred, gt, size=None)
    assert per == pytest.approx([0.5, 1.0]) and mean == pytest.approx(0.75)
    # K=3 GT boxes, 2 predictions: the unmatched GT box scores 0
    per3, mean3 = matched_ious(pred, gt + [[0.9, 0.0, 1.0, 0.1]], size=None)
    assert per3 == pytest.approx([0.5, 1.0, 0.0]) and mean3 == pytest.approx(0.5)
    # one GT box, two predictions: the better one (GAR's single-GT branch)
    assert matched_ious(pred, gt[1:], size=None)[1] == pytest.approx(1.0)
    assert matched_ious([], gt)[0] == [0.0, 0.0]


KEYS = {
    "n_total",
    "n_evaluated",
    "n_failed",
    "ciou@0.3",
    "ciou@0.5",
    "auc",
    "ap",
    "piap",
    "refined",
    "skipped",
}


def test_summary_strict_vs_non_strict():
    hit = SampleScore(id="a", pred_boxes=[HALF], gt_boxes=[HALF], refined=1)
    failed = SampleScore(id="b", failed=True, error="boom", gt_boxes=[HALF])
    loose = summarize([hit, failed], duet=False)
    assert set(loose) == KEYS
    assert (loose["n_total"], loose["n_evaluated"], loose["n_failed"]) == (2, 1, 1)
    assert loose["ciou@0.5"] == 1.0 and loose["auc"] == pytest.approx(1.0) and loose["ap"] == pytest.approx(1.0)
    assert (loose["refined"], loose["skipped"]) == (1, 0)

    strict = summarize([hit, failed], duet=False, strict=True)
    assert strict["n_evaluated"] == 2 and strict["ciou@0.5"] == 0.5
    assert strict["auc"] == pytest.approx((1 + 0.5) / 2 * 0.05 + 19 * 0.5 * 0.05)
    g_frac = 113 * 113 / 224**2  # the failed sample's AP: an empty prediction scores |G| / N
    assert strict["ap"] == pytest.approx((1 + g_frac) / 2)
    # pooled: the hit's pixels are all right; the miss adds positives but no predicted pixel
    assert strict["piap"] == pytest.approx(0.5 * 1.0 + 0.5 * (2 * 113 * 113) / (2 * 224**2))


def test_summary_nothing_evaluated_gives_none():
    out = summarize([SampleScore(id="x", failed=True, gt_boxes=[HALF])], duet=True)
    assert out["n_evaluated"] == 0 and out["ciou@0.3"] is None and out["piap"] is None
    assert out["matched_mean_iou"] is None
    assert summarize([], duet=False)["n_total"] == 0


def test_duet_summary_and_record_round_trip():
    gt = [[0.0, 0.0, 0.4, 0.4], [0.6, 0.6, 1.0, 1.0]]  # grid (0,0)-(90,90) and (134,134)-(223,223)
    swapped = SampleScore(id="d1", pred_boxes=gt[::-1], gt_boxes=gt, refined=1, skipped=1)
    # d2: source 1 right, source 2 predicted at (0,134)-(90,223), touching no GT box
    half = SampleScore(id="d2", pred_boxes=[gt[0], [0.0, 0.6, 0.4, 1.0]], gt_boxes=gt, skipped=2)
    # a stored JSON record redraws the same masks
    assert SampleScore.model_validate_json(swapped.model_dump_json()) == swapped
    d2 = half.metrics()
    assert d2["ciou"] == pytest.approx(91 * 91 / (91 * 91 + 90 * 90 + 91 * 90))
    assert d2["per_source_iou"] == pytest.approx([1.0, 0.0]) and d2["matched_mean_iou"] == pytest.approx(0.5)
    assert swapped.metrics()["per_source_iou"] == pytest.approx([1.0, 1.0])

    out = summarize([swapped, half], duet=True)
    assert set(out) == KEYS | {"matched_mean_iou"}
    assert out["ciou@0.3"] == 1.0 and out["ciou@0.5"] == 0.5
    assert out["matched_mean_iou"] == pytest.approx(0.75)
    assert (out["refined"], out["skipped"]) == (1, 3)


def _gar_clip(box, w, h):
    # GAR-SSL code/bbox_utils.py clip_box, restated for the comparison below
    x1, y1, x2, y2 = (int(np.clip(v, 0, m - 1)) for v, m in zip(box, (w, h, w, h)))
    x1, x2, y1, y2 = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
    x2 = min(x1 + 1, w - 1) if x2 == x1 else x2
    y2 = min(y1 + 1, h - 1) if y2 == y1 else y2
    return [x1, y1, x2, y2]


def test_masks_match_gar_pipeline_on_random_pixel_boxes():
    from fractions import Fraction

    import cv2

    def noisy_tie(box, w, h):
        # px * 224/W exactly half-way, but GAR's float product is off by an ulp: its rounding is noise
        return any(
            Fraction(v * 224, s).denominator == 2 and v * (224 / s) != v * 224 / s for v, s in zip(box, (w, h, w, h))
        )

    rng = np.random.default_rng(1)
    compared = 0
    for w, h in [(448, 224), (640, 360), (224, 224), (1280, 720), (333, 517)]:
        for _ in range(40):
            box = _gar_clip(rng.integers(-20, max(w, h) + 20, 4).tolist(), w, h)
            if noisy_tie(box, w, h):
                continue
            compared += 1
            g224 = _gar_clip([round(v * s) for v, s in zip(box, (224 / w, 224 / h) * 2)], 224, 224)
            gar = np.zeros((224, 224), np.float32)
            cv2.rectangle(gar, (g224[0], g224[1]), (g224[2], g224[3]), 1, -1)
            assert np.array_equal(boxes_to_mask([normalize_box(box, w, h)]), gar), (w, h, box)
    assert compared > 150


# --- cIoU in float32, as the released evaluator computes it ---------------------------------------

GT_100 = [0.0, 0.0, 99 / 224, 99 / 224]  # on a 224x224 frame: grid corners (0,0)-(99,99), 100 x 100 pixels


def _inside(k: int) -> list[float]:
    """A prediction of 100 x k pixels inside GT_100: cIoU exactly k / 100."""
    return [0.0, 0.0, 99 / 224, (k - 1) / 224]


@pytest.mark.parametrize(
    "k, counted", [(15, True), (30, True), (45, False), (60, True), (65, False), (85, True), (90, False)]
)
def test_ciou_is_float32_like_the_evaluator(k, counted):
    # GAR's masks are float32 and so is cal_CIOU's quotient: an exact k/100 is float32(k/100), which
    # sits above the float64 linspace threshold for 0.15, 0.3, 0.6, 0.85 and below it for 0.45, 0.65, 0.9
    score = SampleScore(id="c", pred_boxes=[_inside(k)], gt_boxes=[GT_100], image_size=[224, 224])
    value = score.metrics()["ciou"]
    assert value == float(np.float32(k / 100))
    i = int(round(k / 5))
    assert bool(value >= THRESHOLDS[i]) == counted
    # one sample: the success rate is 1 up to the last threshold it reaches, the area 0.05 per step less half a step
    reached = i + 1 if counted else i
    assert summarize([score], duet=False)["auc"] == pytest.approx(0.05 * reached - 0.025)
    # what the released scripts compute: float32 masks, cal_CIOU with its 1e-8, sklearn's auc over linspace
    gt, pred = score.masks()
    theirs = np.sum(pred * gt) / (np.sum(gt) + np.sum(pred * (gt == 0)) + 1e-8)
    assert value == float(theirs)
    rates = [float(np.mean(np.array([theirs]) >= t)) for t in np.linspace(0, 1, 21)]
    assert summarize([score], duet=False)["auc"] == pytest.approx(sk_auc(np.linspace(0, 1, 21), rates))


def test_ciou_of_one_pixel_masks():
    one = np.zeros((4, 4), np.float32)
    one[1, 2] = 1
    assert ciou(one, one) == 1.0


# --- the conversions, each rounding and each guard ---------------------------------------------------


def test_gt_rounds_to_pixels_then_to_the_grid_half_up_not_truncated():
    # x1 = 0.1015 on a 640-wide frame: 64.96 px rounds to 65 (int() would give 64), and 65 * 224/640 =
    # 22.75 rounds to 23 (int() would give 22)
    assert box_to_grid([0.1015, 0.2, 0.5, 0.6], 224, (640, 360))[0] == 23


def test_one_rounding_removes_float_noise_only():
    # 113.5 less 3e-10 is float noise of an exact half: it rounds to even (114); 4e-7 less is a real value (113)
    assert box_to_grid([(113.5 - 3e-10) / 224, 0.0, 0.9, 0.9])[0] == 114
    assert box_to_grid([(113.5 - 4e-7) / 224, 0.0, 0.9, 0.9])[0] == 113


def test_bad_boxes_and_sizes_are_refused_with_their_reason():
    assert normalize_box([0, 0, 1, 1], 1, 1) == [0.0, 0.0, 1.0, 1.0]  # a one-pixel image is an image
    for box in ([0, 0, float("nan"), 1], [0, 0, float("inf"), 1], [0, 0, 1]):
        with pytest.raises(ValueError, match="a box needs 4 finite numbers"):
            box_to_grid(box)


def test_piap_pools_scores_in_any_order_of_arrival():
    # the first sample brings scores 0 and 1, the second 0.5: the pool must rank 1 > 0.5 > 0
    g1, p1 = np.array([1.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0])
    g2, p2 = np.array([0.0, 1.0, 0.0, 0.0]), np.array([0.5, 0.5, 0.0, 0.0])
    pairs = [(g1, p1), (g2, p2)]
    expected = average_precision_score(np.concatenate([g1, g2]), np.concatenate([p1, p2]))
    assert piap(pairs) == pytest.approx(expected)


def test_no_gt_box_gives_no_matched_iou_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mean of nothing must not reach numpy's warning
        per, mean = matched_ious([HALF, SHIFTED], [])
        assert per == [] and np.isnan(mean)
        # an evaluated duet sample without GT boxes: the matched IoU is undefined (None), not NaN
        out = summarize([SampleScore(id="e", pred_boxes=[HALF, SHIFTED], gt_boxes=[])], duet=True)
    assert out["n_evaluated"] == 1 and out["matched_mean_iou"] is None


def test_normalize_box_divides_by_the_size_and_refuses_a_bad_one():
    assert normalize_box([10, 20, 30, 40], 100, 200) == [0.1, 0.1, 0.3, 0.2]
    for w, h in ((0, 10), (10, 0), (-5, 10)):
        with pytest.raises(ValueError):
            normalize_box([1, 1, 2, 2], w, h)


def test_a_single_pixel_box_grows_by_one_inside_the_grid():
    assert box_to_grid([0.5, 0.5, 0.5, 0.5]) == (112, 112, 113, 113)
    assert box_to_grid([1.0, 1.0, 1.0, 1.0]) == (223, 223, 223, 223)  # at the border it cannot grow
    mask = boxes_to_mask([[0.5, 0.5, 0.5, 0.5]])
    assert mask.sum() == 4 and mask[112:114, 112:114].all()  # 2x2 inclusive pixels


def test_success_rate_counts_a_ciou_equal_to_the_threshold():
    assert success_rate([0.5], 0.5) == 1.0
    assert success_rate([0.4999], 0.5) == 0.0
    assert math.isnan(success_rate([], 0.5))


def test_ap_and_piap_on_soft_scores_equal_sklearn():
    g = np.array([1, 0, 1, 0, 1, 0, 0, 1], dtype=float)
    p = np.array([1.0, 0.0, 0.5, 0.5, 0.25, 1.0, 0.0, 0.75])  # 0 and 1 among soft values
    assert average_precision(g, p) == pytest.approx(average_precision_score(g, p))
    rng = np.random.default_rng(5)
    pairs = [((rng.random(50) < 0.4).astype(float), rng.integers(0, 5, 50) / 4.0) for _ in range(4)]
    pooled_g = np.concatenate([a for a, _ in pairs])
    pooled_p = np.concatenate([b for _, b in pairs])
    assert piap(pairs) == pytest.approx(average_precision_score(pooled_g, pooled_p))


def test_iou_of_two_empty_boxes_is_zero():
    assert box_iou([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1], size=None) == 0.0
    assert box_iou([0.1, 0.1, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2], size=None) == pytest.approx(1.0)


def test_a_sample_without_gt_has_no_matched_iou_and_does_not_pull_the_mean():
    per, mean = matched_ious([[0.1, 0.1, 0.2, 0.2]], [])
    assert per == [] and math.isnan(mean)
    good = SampleScore(id="a", pred_boxes=[[0.0, 0.0, 0.5, 0.5]], gt_boxes=[[0.0, 0.0, 0.5, 0.5]])
    empty = SampleScore(id="b", pred_boxes=[[0.0, 0.0, 0.5, 0.5]], gt_boxes=[])
    out = summarize([good, empty], duet=True)
    assert out["matched_mean_iou"] == pytest.approx(1.0)


def test_refined_and_skipped_count_failed_samples_too():
    records = [
        SampleScore(id="a", pred_boxes=[[0, 0, 0.5, 0.5]], gt_boxes=[[0, 0, 0.5, 0.5]], refined=1, skipped=1),
        SampleScore(id="b", failed=True, error="x", refined=1, skipped=0, gt_boxes=[[0, 0, 0.5, 0.5]]),
    ]
    out = summarize(records, duet=False)
    assert (out["refined"], out["skipped"], out["n_failed"], out["n_evaluated"]) == (2, 1, 1, 1)

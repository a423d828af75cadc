"""Edges of the method's rules and of the metrics that a mutation run found unguarded.

Each test pins one behaviour a changed comparison, constant, rounding or sort would alter
(max_delta's rounding, the clamp flag, recenter without a target, anchor order, normalize_box's
bounds, a single-pixel box, a success rate at exactly the threshold, AP/PIAP on soft scores, the
IoU of empty boxes, a NaN matched IoU); the expected values are worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from gar_agent.eval.metrics import (
    SampleScore,
    average_precision,
    box_iou,
    box_to_grid,
    boxes_to_mask,
    matched_ious,
    normalize_box,
    piap,
    success_rate,
    summarize,
)
from gar_agent.rules import aggregate_votes, apply_ops, max_delta, resolve_refinement
from gar_agent.state import AnchorVote, RefineAnswer, RefineOps, Vote, VoteAnswer


@pytest.mark.parametrize(
    "w, h, expected",
    [
        (200, 107, 9),  # 0.08 * 107 = 8.56 -> 9 (int() would give 8)
        (200, 106, 8),  # 8.48 -> 8
        (150, 100, 8),  # 8.0
        (49, 300, 4),  # 3.92 -> 4, and never under 4
        (10, 10, 4),
    ],
)
def test_max_delta_rounds_to_nearest(w, h, expected):
    assert max_delta(w, h) == expected


def test_clamped_says_whether_the_clamp_cut_the_move():
    prev = [100, 100, 200, 200]  # image 400x400: max_delta = 32
    near, _, clamped = resolve_refinement(RefineAnswer(bbox=[110, 95, 210, 205]), prev, 400, 400)
    assert near == [110, 95, 210, 205] and clamped is False
    far, applied, clamped = resolve_refinement(RefineAnswer(bbox=[0, 0, 399, 399]), prev, 400, 400)
    assert far == [68, 68, 232, 232] and clamped is True and applied == "bbox"


def test_recenter_without_a_target_keeps_the_box():
    assert apply_ops([10, 20, 50, 60], RefineOps(type="recenter")) == [10, 20, 50, 60]


def test_ops_in_a_resized_model_frame_move_image_pixels():
    # the model sees a 400x200 image as 200x100: a delta of 5 model pixels is 10 image pixels
    # (within max_delta = 16, so nothing is clamped)
    answer = RefineAnswer(ops=RefineOps(type="delta", dx=5))
    box, applied, clamped = resolve_refinement(answer, [40, 20, 80, 60], 400, 200, model_frame=(200, 100))
    assert box == [50, 20, 90, 60] and applied == "ops" and not clamped


def test_anchors_come_out_by_score_descending():
    parsed = VoteAnswer(
        av_consistency=0.5,
        keep=True,
        anchor_votes=[AnchorVote(anchor="low", score=0.1), AnchorVote(anchor="mid", score=0.5),
                      AnchorVote(anchor="high", score=0.9)],
    )  # fmt: skip
    a = aggregate_votes([Vote(index=0, raw="", parsed=parsed)])
    assert [v.anchor for v in a.anchor_votes] == ["high", "mid", "low"]


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

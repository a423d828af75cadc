"""The method's rules: box hygiene, refinement clamps and ops, vote aggregation, the gate."""

import pytest

from gar_agent.rules import (
    aggregate_votes,
    apply_ops,
    clip_box,
    gate,
    max_delta,
    normalize_name,
    resolve_refinement,
    scale_box,
)
from gar_agent.state import Analysis, AnchorVote, RefineAnswer, RefineOps, Settings, Vote, VoteAnswer


@pytest.mark.parametrize(
    "box, expected",
    [
        ([10, 20, 30, 40], [10, 20, 30, 40]),
        ([30, 40, 10, 20], [10, 20, 30, 40]),  # corners re-ordered
        ([-5, -9, 500, 400], [0, 0, 99, 79]),  # clipped into [0, W-1] x [0, H-1]
        ([10, 20, 10, 20], [10, 20, 11, 21]),  # zero size grows by one pixel
        ([99, 79, 120, 90], [98, 78, 99, 79]),  # ... inward at the far border
        ([10.4, 20.6, 30.5, 40.49], [10, 21, 30, 40]),  # rounded to integer pixels
    ],
)
def test_clip_box(box, expected):
    assert clip_box(box, 100, 80) == expected


def test_max_delta():
    assert max_delta(640, 480) == round(0.08 * 480) == 38
    assert max_delta(30, 40) == 4  # never under 4 pixels
    assert max_delta(250, 330) == 20


def test_ops():
    box = [100, 100, 200, 150]
    assert apply_ops(box, RefineOps(type="delta", dx=5, dy=-5, dl=1, dr=2, dt=3, db=4)) == [106, 98, 207, 149]
    assert apply_ops(box, RefineOps(type="expand", amount=-10)) == [90, 90, 210, 160]  # |amount|
    assert apply_ops(box, RefineOps(type="shrink", amount=10)) == [110, 110, 190, 140]
    assert apply_ops(box, RefineOps(type="recenter", target=[300, 300])) == [250, 275, 350, 325]


def test_refinement_is_clamped_per_side():
    prev = [100, 100, 200, 200]  # 640x480 -> max_delta 38
    ans = RefineAnswer(bbox=[0, 90, 400, 210], changed=True)
    box, applied, clamped = resolve_refinement(ans, prev, 640, 480)
    assert box == [62, 90, 238, 210] and applied == "bbox" and clamped


def test_refinement_resolution_order():
    prev = [100, 100, 200, 200]
    ops = RefineOps(type="delta", dx=10)
    # ops first, then a valid bbox replaces the candidate
    box, applied, _ = resolve_refinement(RefineAnswer(bbox=[90, 90, 190, 190], ops=ops), prev, 640, 480)
    assert box == [90, 90, 190, 190] and applied == "ops+bbox"
    # ops alone
    box, applied, _ = resolve_refinement(RefineAnswer(ops=ops), prev, 640, 480)
    assert box == [110, 100, 210, 200] and applied == "ops"
    # changed: false keeps the previous box whatever else came
    box, applied, _ = resolve_refinement(RefineAnswer(bbox=[0, 0, 5, 5], ops=ops, changed=False), prev, 640, 480)
    assert box == prev and applied == "not_changed"
    # an unparsed answer keeps the previous box
    assert resolve_refinement(None, prev, 640, 480)[:2] == (prev, "parse_error")


def test_refinement_in_the_model_frame_lands_in_image_pixels():
    # The model saw 308x252 for a 320x240 image; its answer [154, 126, ...] is the image centre.
    box, _, _ = resolve_refinement(RefineAnswer(bbox=[144, 116, 164, 136]), [150, 110, 170, 130], 320, 240, (308, 252))
    assert box == [round(144 * 320 / 308), round(116 * 240 / 252), round(164 * 320 / 308), round(136 * 240 / 252)]
    assert scale_box([0, 0, 308, 252], (308, 252), (320, 240)) == [0, 0, 320, 240]


def _v(i, av, keep, tags=(), anchors=()):
    return Vote(
        index=i,
        raw="",
        parsed=VoteAnswer(
            av_consistency=av,
            keep=keep,
            role_tags=list(tags),
            anchor_votes=[AnchorVote(anchor=a, score=s) for a, s in anchors],
        ),
    )


def test_aggregation_means_majority_tags_anchors():
    votes = [
        _v(0, 0.9, True, ["Bow Arm", "strings"], [("bow on strings", 0.9), ("violin-body", 0.4)]),
        _v(1, 1.5, True, ["bow  arm", "chin"], [("bow_on_strings", 0.7)]),
        _v(2, -0.3, False, ["bow-arm", "strings", "x"], [("Violin Body", 2.0)]),
        Vote(index=3, raw="garbage", error="no JSON object found in the answer"),
    ]
    a = aggregate_votes(votes)
    assert a.n_votes == 4 and a.n_parsed == 3
    assert a.av_consistency == pytest.approx((0.9 + 1.0 + 0.0) / 3)  # each clipped to [0,1]
    assert a.keep is True  # 2 of 3 >= floor(3/2)+1
    assert a.role_tags == ["bow_arm", "strings", "chin", "x"]
    assert [(x.anchor, round(x.score, 6)) for x in a.anchor_votes] == [("bow_on_strings", 0.8), ("violin_body", 0.7)]


@pytest.mark.parametrize(
    "trues, n, keep", [(2, 4, False), (3, 4, True), (3, 5, True), (2, 5, False), (1, 1, True), (1, 2, False)]
)
def test_keep_is_a_strict_majority(trues, n, keep):
    votes = [_v(i, 0.5, i < trues) for i in range(n)]
    assert aggregate_votes(votes).keep is keep


def test_no_parsed_vote_means_no_evidence():
    a = aggregate_votes([Vote(index=0, raw="x", error="bad")])
    assert (a.av_consistency, a.keep, a.role_tags, a.anchor_votes, a.n_parsed) == (0.0, False, [], [], 0)


def test_tags_top4_and_anchor_names_cut():
    votes = [_v(0, 0.5, True, ["a", "b", "c", "d", "e"], [("x" * 60, 0.5)]), _v(1, 0.5, True, ["e", "e"])]
    a = aggregate_votes(votes)
    assert a.role_tags[0] == "e" and len(a.role_tags) == 4
    assert a.anchor_votes[0].anchor == "x" * 48
    assert normalize_name(" Bow -- on  Strings ") == "bow_on_strings"


def _analysis(av, keep):
    return Analysis(av_consistency=av, keep=keep, role_tags=[], anchor_votes=[], n_votes=5, n_parsed=5)


@pytest.mark.parametrize(
    "av, keep, conf, refine",
    [
        (0.5, True, 0.75, False),  # equality passes both thresholds
        (0.4999, True, 0.75, True),
        (0.5, True, 0.7499, True),
        (0.9, False, 0.9, True),  # keep false always refines
        (1.0, True, 1.0, False),
    ],
)
def test_gate_edges(av, keep, conf, refine):
    d = gate(_analysis(av, keep), conf, Settings(tau_av=0.5, tau_audio=0.75))
    assert d.refine is refine
    assert bool(d.reasons) is refine  # every refine decision says which condition failed
    assert d.tau_av == 0.5 and d.tau_audio == 0.75


def test_box_iou_is_a_rule_and_the_metrics_name_is_the_same_function():
    from gar_agent import rules
    from gar_agent.eval import metrics

    assert metrics.box_iou is rules.box_iou and metrics.box_to_grid is rules.box_to_grid  # old import path
    assert rules.box_iou([0, 0, 10, 10], [5, 0, 15, 10], size=None) == pytest.approx(50 / 150)  # continuous
    assert rules.box_iou([0, 0, 10, 10], [20, 20, 30, 30], size=None) == 0.0
    # on GAR's 224 grid in inclusive pixels: [0, 0.5] x [0, 0.5] is 113 x 113 pixels of the 224 x 224 grid
    assert rules.box_iou([0, 0, 0.5, 0.5], [0, 0, 1, 1]) == pytest.approx(113 * 113 / (224 * 224))


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

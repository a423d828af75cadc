"""Parsing realistic messy model answers into each stage's fields."""

import pytest

from gar_agent.answers import parse_audio, parse_boxes, parse_refine, parse_vote
from gar_agent.rules import resolve_refinement


@pytest.mark.parametrize(
    "text, boxes",
    [
        ('{"bbox": [10, 20, 110, 220], "description": "a dog"}', [[10, 20, 110, 220]]),
        ('```json\n{"bbox": [10, 20, 110, 220], "description": "a dog",}\n```', [[10, 20, 110, 220]]),
        (
            'Sure! The dog is here: {"bbox": ["10", "20", "110", "220"], "description": "dog"} Hope this helps.',
            [[10, 20, 110, 220]],
        ),
        ("{'bbox': [10.6, 20, 110, 220], 'description': 'dog'}", [[10.6, 20, 110, 220]]),
        ('{"bbox": [[10, 20, 110, 220]], "description": "dog"}', [[10, 20, 110, 220]]),
        ('{"bbox": {"x1": 1, "y1": 2, "x2": 3, "y2": 4}}', [[1, 2, 3, 4]]),
        ('{"bbox": "[5, 6, 70, 80]", "description": "dog"}', [[5, 6, 70, 80]]),
        ('Thinking... ```\n{"bbox": [1,2,3,4]}\n``` done', [[1, 2, 3, 4]]),
        ('{"bbox": [10, 20, 110, 220], "description": "dog"', [[10, 20, 110, 220]]),  # cut off
    ],
)
def test_single_box_answers(text, boxes):
    value, error = parse_boxes(text, 1)
    assert error is None, error
    assert value["boxes"] == boxes


def test_two_boxes_with_descriptions():
    value, error = parse_boxes('{"bboxes": [[1,2,3,4],[5,6,7,8]], "descriptions": ["a", "b"]}', 2)
    assert error is None and value["boxes"] == [[1, 2, 3, 4], [5, 6, 7, 8]] and value["descriptions"] == ["a", "b"]


@pytest.mark.parametrize(
    "text, k, reason",
    [
        ("I cannot see any sound source.", 1, "no JSON object"),
        ("", 1, "empty"),
        ('{"description": "dog"}', 1, "'bbox' is missing"),
        ('{"bbox": [1, 2, 3]}', 1, "not a list of 4"),
        ('{"bbox": [1, 2, "x", 4]}', 1, "expected a number"),
        ('{"bboxes": [[1,2,3,4]], "descriptions": ["a"]}', 2, "has 1 items, expected 2"),
        ('{"bbox": [1, 2, NaN, 4]}', 1, "not finite"),
    ],
)
def test_unusable_box_answers_say_why(text, k, reason):
    value, error = parse_boxes(text, k)
    assert value is None and reason in error


@pytest.mark.parametrize(
    "text, cls, conf",
    [
        ('{"audio_class": "Dog Barking", "audio_confidence_score": 0.8}', "dog barking", 0.8),
        ('{"audio_class": "violin", "audio_confidence_score": "0.9"}', "violin", 0.9),
        ('{"audio_class": "violin", "audio_confidence_score": "85%"}', "violin", 0.85),
        ('{"audio_class": "violin", "audio_confidence_score": 1.7}', "violin", 1.0),
        ('{"audio_class": "violin", "audio_confidence_score": -2}', "violin", 0.0),
    ],
)
def test_audio_answers(text, cls, conf):
    value, error = parse_audio(text, 1)
    assert error is None
    assert value["classes"] == [cls] and value["confidences"] == [pytest.approx(conf)]


def test_audio_duet_and_missing_confidence():
    value, _ = parse_audio('{"audio_classes": ["a", "b"], "audio_confidence_scores": [0.5, 0.25]}', 2)
    assert value == {"classes": ["a", "b"], "confidences": [0.5, 0.25]}
    value, error = parse_audio('{"audio_class": "violin"}', 1)
    assert value is None and "audio_confidence_score" in error


def test_vote_coercions():
    v, error = parse_vote(
        'Answer: {"av_consistency": "0.7", "keep": "yes", "role_tags": "bow, strings",'
        ' "anchor_votes": {"bow_on_strings": 0.9, "violin body": "0.5"},}'
    )
    assert error is None
    assert v.av_consistency == 0.7 and v.keep is True
    assert v.role_tags == ["bow", "strings"]
    assert [(a.anchor, a.score) for a in v.anchor_votes] == [("bow_on_strings", 0.9), ("violin body", 0.5)]


def test_vote_caps_lists_and_keeps_out_of_range_for_aggregation():
    anchors = [{"anchor": f"a{i}", "score": 0.5} for i in range(8)]
    v, _ = parse_vote(
        '{"av_consistency": 1.4, "keep": false, "role_tags": ["1","2","3","4","5","6"], "anchor_votes": %s}'
        % str(anchors).replace("'", '"')
    )
    assert len(v.anchor_votes) == 5 and len(v.role_tags) == 4
    assert v.av_consistency == 1.4  # clipped when aggregated, as the method says


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"keep": true}', "'av_consistency' is missing"),
        ('{"av_consistency": 0.5}', "'keep' is missing"),
        ('{"av_consistency": 0.5, "keep": "maybe"}', "expected true or false"),
        ('{"av_consistency": true, "keep": true}', "boolean"),
        ("The box looks right to me.", "no JSON object"),
    ],
)
def test_unusable_votes(text, reason):
    v, error = parse_vote(text)
    assert v is None and reason in error


def test_refine_answers():
    r, error = parse_refine(
        '```json\n{"bbox": [1,2,30,40], "changed": "true", "ops": {"type": "delta", "dx": "3", "dl": -2},'
        ' "refined_description": "A dog.\\nIt barks."}\n```'
    )
    assert error is None
    assert r.bbox == [1, 2, 30, 40] and r.changed and r.ops.type == "delta" and r.ops.dx == 3 and r.ops.dl == -2
    assert r.refined_description == "A dog. It barks."
    r, _ = parse_refine('{"bbox": [1, 2], "changed": true, "ops": {"type": "recenter", "target": [5, 6]}}')
    assert r.bbox is None and r.ops.target == [5, 6]  # a malformed bbox is ignored, ops still apply
    r, _ = parse_refine('{"changed": false}')
    assert r.changed is False and r.bbox is None


@pytest.mark.parametrize(
    "ops, reason",
    [
        ('{"type": "rotate"}', "'ops.type' is 'rotate'"),
        ('{"type": "recenter"}', "'ops.target'"),
        ('{"type": "expand", "amount": "a lot"}', "'ops.amount'"),
        ('"delta"', "'ops' is not an object"),
    ],
)
def test_malformed_ops_are_ignored_and_the_bbox_still_applies(ops, reason):
    # The released code applies ops, then the bbox: a broken ops must not lose the bbox beside it.
    r, error = parse_refine('{"bbox": [10, 20, 30, 40], "changed": true, "ops": ' + ops + "}")
    assert error is None and r.ops is None and reason in r.ops_error
    assert r.bbox == [10, 20, 30, 40]
    box, applied, _ = resolve_refinement(r, [12, 22, 32, 42], 200, 100)
    assert box == [10, 20, 30, 40] and applied == "bbox"


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"description": "nothing useful"}', "none of"),
        ("no json", "no JSON object"),
    ],
)
def test_unusable_refine(text, reason):
    r, error = parse_refine(text)
    assert r is None and reason in error

"""Every stage's parser, both protocols, single and duet, on arbitrary text and arbitrary JSON values.

A model answer is untrusted text: whatever it holds, each stage must come back with a parsed value
or a clean "unusable" outcome (protocol `reference`: a failed sample where the released scripts drop
the clip), never an exception. The stages are driven through the protocol interface the nodes use
(`generate`, `parse_votes` + `finish_analysis`, `refine`'s resolver), so parsing, coercion, clipping
and aggregation are all covered.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gar_agent.answers import parse_audio, parse_boxes, parse_refine, parse_vote
from gar_agent.context import GarContext
from gar_agent.prompts import PromptSet, protocol_settings
from gar_agent.protocols import gar, reference
from gar_agent.protocols.importer import import_prompts
from gar_agent.state import AudioInfo, ImageInfo, ModelCall, RunState, Settings, SourceRecord, SourceState

FAKE = Path(__file__).parent / "data" / "fake_code"  # stand-ins for the released scripts (test_reference.py)

BIG = "1" + "0" * 400  # a number no float holds

KEYS = [
    "bbox", "bboxes", "description", "descriptions", "audio_class", "audio_classes", "audio_confidence_score",
    "audio_confidence_scores", "av_consistency", "keep", "role_tags", "anchor_votes", "anchor", "score",
    "changed", "ops", "type", "dx", "dy", "dl", "dr", "dt", "db", "amount", "target", "refined_description",
    "x1", "y1", "x2", "y2",
]  # fmt: skip
SCALARS = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**1000)  # digits json.dumps still writes
    | st.integers(min_value=-(10**1000), max_value=-(10**300))
    | st.sampled_from(["delta", "expand", "shrink", "recenter", "yes", "80%", "1e999", "nan", BIG, "-" + BIG])
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), children, max_size=6)
    ),
    max_leaves=24,
)
# objects whose keys are the ones the parsers look for, so most examples reach the coercion code
OBJECTS = st.dictionaries(st.sampled_from(KEYS), JSON_VALUES, min_size=1, max_size=8)
WRAPS = ["{}", "```json\n{}\n```", "Sure! {} Hope that helps.", "{} {}", "[/INST] {}", "{}\n```"]
JSON_ANSWERS = st.builds(
    lambda value, wrap: wrap.replace("{}", json.dumps(value, allow_nan=True)),
    OBJECTS | JSON_VALUES,
    st.sampled_from(WRAPS),
)
TEXT = st.text(max_size=300) | st.text(alphabet='{}[]":,0123456789.eE-+ntruefalsNIbox`\n ', max_size=300)
ANSWERS = JSON_ANSWERS | TEXT
# the handmade ones: a 400-digit confidence (issue 18.3), nesting past the recursion limit, an
# integer past str()'s 4,300 digits, NaN and infinities where boxes and scores go
NASTY = [
    f'{{"audio_classes": ["a", "b"], "audio_confidence_scores": [{BIG}, 0.5]}}',
    f'{{"audio_class": "a", "audio_confidence_score": {BIG}}}',
    '{"audio_class": "a", "audio_confidence_score": 1e999}',
    f'{{"bbox": [{BIG}, 1, 2, 3], "bboxes": [[{BIG}, 1, 2, 3], [0, 0, -{BIG}, 1e999]]}}',
    f'{{"av_consistency": {BIG}, "keep": true, "anchor_votes": [{{"anchor": "a", "score": {BIG}}}]}}',
    f'{{"bbox": [1, 2, 3, 4], "ops": {{"type": "delta", "dx": {BIG}, "dr": 1e308}}}}',
    f'{{"ops": {{"type": "recenter", "target": [{BIG}, -{BIG}]}}}}',
    '{"bbox": [1.7e308, -1.7e308, 1.7e308, 1.7e308], "changed": true}',
    '{"bbox": [NaN, Infinity, -Infinity, 1], "av_consistency": NaN, "keep": NaN}',
    '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"description": ' + "9" * 5000 + ', "bbox": [1, 2, 3, 4]}',
    "",
    "   ",
]

W, H = 640, 360
IMAGE = ImageInfo(path="frame.jpg", width=W, height=H)
AUDIO = AudioInfo(path="clip.wav", sample_rate=16000, duration_s=1.0, original_duration_s=1.0)
GOOD = {
    1: {
        "generate": '{"bbox": [10, 20, 200, 300], "description": "a"}',
        "audio": '{"audio_class": "violin", "audio_confidence_score": 0.9}',
    },
    2: {
        "generate": '{"bboxes": [[10, 20, 200, 300], [300, 20, 600, 300]], "descriptions": ["a", "b"]}',
        "audio": '{"audio_classes": ["violin", "cello"], "audio_confidence_scores": [0.9, 0.8]}',
    },
}
PROFILE = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def contexts(tmp_path_factory, media):
    """(protocol, sources) -> (Settings, GarContext, cleanup)."""
    sets = tmp_path_factory.mktemp("authors") / "sets"
    import_prompts(FAKE, sets)
    out = {}
    for k in (1, 2):
        shipped = PromptSet(None)
        out["gar", k] = (Settings(sources=k), GarContext(media=media, prompts=shipped), "none")
        bench = "music-solo" if k == 1 else "vggss-duet"
        ref = PromptSet(sets / bench)
        settings_ = Settings(sources=k, **protocol_settings(ref, "reference", k))
        out["reference", k] = (settings_, GarContext(media=media, prompts=ref), bench)
    return out


def _call(request, answer: str) -> ModelCall:
    return ModelCall(
        stage=request.stage, source=request.source, template=request.template, prompt=request.prompt,
        answers=[answer] * request.n,
    )  # fmt: skip


def run_generate(protocol: str, k: int, contexts, stage: str, answer: str) -> dict:
    """Generate with `answer` at `stage` (audio or generate) and a good answer elsewhere."""
    settings_, ctx, _ = contexts[protocol, k]
    gen = (gar if protocol == "gar" else reference).generate(
        RunState(settings=settings_, image=IMAGE, audio=AUDIO), ctx
    )
    request = next(gen)
    try:
        while True:
            request = gen.send(_call(request, answer if request.stage == stage else GOOD[k][request.stage]))
    except StopIteration as stop:
        return stop.value


def source_state(settings_: Settings, k: int) -> SourceState:
    boxes = [[10, 20, 200, 300], [300, 20, 600, 300]][:k]
    records = [SourceRecord(index=i, initial_box=b, box=b, audio_class="violin", audio_confidence=0.5)
               for i, b in enumerate(boxes)]  # fmt: skip
    return SourceState(settings=settings_, image=IMAGE, audio=AUDIO, source=records[0], peers=records[1:])


def check_generate(update: dict, k: int) -> None:
    if update.get("error"):
        assert isinstance(update["error"], str) and update["error"].strip()
        return
    assert len(update["sources"]) == k
    for s in update["sources"]:
        x1, y1, x2, y2 = s.box
        assert 0 <= x1 <= x2 <= W - 1 and 0 <= y1 <= y2 <= H - 1
        assert isinstance(s.audio_class, str) and isinstance(s.audio_confidence, float)


def check_stages(protocol: str, k: int, contexts, answer: str) -> None:
    """Every stage of one protocol and source count on one answer: a value or a clean failure."""
    module = gar if protocol == "gar" else reference
    settings_, ctx, _ = contexts[protocol, k]
    for stage in ("audio", "generate"):
        check_generate(run_generate(protocol, k, contexts, stage, answer), k)
    votes, fatal = module.parse_votes([answer, answer], 0)
    assert len(votes) == 2 and (fatal is None or isinstance(fatal, str))
    assert all(v.parsed is not None or (isinstance(v.error, str) and v.error) for v in votes)
    analysis = module.finish_analysis(votes, ctx)
    assert analysis.n_votes == 2 and isinstance(analysis.keep, bool)
    request, resolve = module.refine(source_state(settings_, k), ctx)
    refinement = resolve(answer)
    x1, y1, x2, y2 = refinement.box
    assert 0 <= x1 <= x2 <= W - 1 and 0 <= y1 <= y2 <= H - 1
    assert all(isinstance(v, int) for v in refinement.box)


def check_gar_parsers(answer: str) -> None:
    """The `gar` parsers directly: (value, None) or (None, one-line reason)."""
    for parsed in (parse_audio(answer, 1), parse_audio(answer, 2), parse_boxes(answer, 1), parse_boxes(answer, 2),
                   parse_vote(answer), parse_refine(answer)):  # fmt: skip
        value, error = parsed
        assert (value is None) != (error is None)
        if error is not None:
            assert isinstance(error, str) and error.strip() and "\n" not in error
    audio, _ = parse_audio(answer, 2)
    if audio:
        assert all(0.0 <= c <= 1.0 for c in audio["confidences"])
    boxes, _ = parse_boxes(answer, 2)
    if boxes:
        assert all(math.isfinite(v) for b in boxes["boxes"] for v in b)


@pytest.mark.parametrize("answer", NASTY, ids=range(len(NASTY)))
@pytest.mark.parametrize("protocol", ["gar", "reference"])
@pytest.mark.parametrize("k", [1, 2])
def test_handmade_hostile_answers(contexts, protocol, k, answer):
    check_stages(protocol, k, contexts, answer)
    check_gar_parsers(answer)


def test_an_overflowing_audio_confidence_is_unusable_not_a_crash(contexts):
    # issue 18.3: a duet confidence of 400 digits raised OverflowError out of the parser
    value, error = parse_audio(NASTY[0], 2)
    assert value is None and error == "'audio_confidence_score' is too large a number"
    update = run_generate("gar", 2, contexts, "audio", NASTY[0])
    assert update.get("error") is None and [s.audio_confidence for s in update["sources"]] == [0.0, 0.0]
    update = run_generate("reference", 2, contexts, "audio", NASTY[0])
    assert "too large for a float" in update["error"] and "drops this sample" in update["error"]


@PROFILE
@given(answer=ANSWERS)
def test_gar_parsers_on_anything(answer):
    check_gar_parsers(answer)


@PROFILE
@given(answer=ANSWERS, k=st.sampled_from([1, 2]))
def test_gar_protocol_stages_on_anything(contexts, answer, k):
    check_stages("gar", k, contexts, answer)


@PROFILE
@given(answer=ANSWERS, k=st.sampled_from([1, 2]))
def test_reference_protocol_stages_on_anything(contexts, answer, k):
    check_stages("reference", k, contexts, answer)

"""Protocol `reference`: the importer, the released scripts' parsing and aggregation, runs, and the fixes.

The importer runs on stand-in modules in tests/data/fake_code that have the released code's function
names and signatures but our own words; the rendered templates are compared with what those
functions return when called.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from gar_agent.cli.app import main
from gar_agent.eval.metrics import SampleScore, box_to_grid
from gar_agent.media import load_image
from gar_agent.models.scripted import ScriptedChatModel
from gar_agent.prompts import PromptError, PromptSet, protocol_settings, render_text
from gar_agent.protocols import reference as ref
from gar_agent.protocols.importer import PromptImportError, import_prompts
from gar_agent.result import run_result
from gar_agent.runner import arun_clip, run_clip
from gar_agent.state import Analysis, AnchorVote, Settings, Vote

FAKE = Path(__file__).parent / "data" / "fake_code"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"fake_{name}", FAKE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # our own stand-in builders: plain functions returning strings
    return module


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("authors") / "sets"


@pytest.fixture(scope="module")
def sets(imported) -> Path:
    import_prompts(FAKE, imported)
    return imported


# --- the importer ----------------------------------------------------------------------------------


ANALYSIS = {
    "av_consistency": 0.7200000000000001,
    "role_tags": ["bow_hand", "it's"],
    "anchor_votes": [{"anchor": "bow", "score": 0.85}, {"anchor": 'say "hi"', "score": 1.0}],
    "keep": True,
}


@pytest.mark.parametrize(
    "box, audio_class, conf, w, h",
    [
        ([10, 20, 110, 220], "violin", 0.7200000000000001, 640, 360),
        ([0, 0, 1, 1], 'a "quoted" {brace} $5', 1, 224, 224),
        ([5, 6, 7, 8], "ünïcode", 0.12345, 1280, 720),
    ],
)
def test_import_renders_exactly_what_the_builders_return(sets, box, audio_class, conf, w, h):
    single, duet = _module("prompts_single"), _module("prompts_duet")
    solo = PromptSet(sets / "music-solo")
    frame = {"width": w, "height": h, "max_x": w - 1, "max_y": h - 1}
    assert solo.render("generate.txt") == single.build_prompt_locate()
    assert solo.render("audio.txt") == single.build_prompt_audio_only()
    assert solo.render(
        "analyze.txt", box=box, audio_class=audio_class, audio_confidence=conf, **frame
    ) == single.build_prompt_analysis_anchor_voting(box, audio_class, conf, w, h)
    refine_values = {f"analysis_{k}": v for k, v in ANALYSIS.items()}
    assert solo.render(
        "refine.txt", box=box, audio_class=audio_class, max_delta=29, **frame, **refine_values
    ) == single.build_prompt_refine(box, audio_class, w, h, analysis=dict(ANALYSIS), max_delta_px=29)

    pair = PromptSet(sets / "music-duet")
    assert pair.render("generate.txt") == duet.build_prompt_locate_duet(dataset_name="MUSIC PAIR")
    assert pair.render("audio.txt") == duet.build_prompt_audio_duet(dataset_name="MUSIC PAIR")
    assert pair.render(
        "analyze.txt", box=box, audio_class=audio_class, audio_confidence=conf, **frame
    ) == duet.build_prompt_analysis_anchor_voting(box, audio_class, conf, w, h)
    vgg = PromptSet(sets / "vggss-duet")
    assert vgg.render("analyze.txt", box=box, audio_class=audio_class, **frame) == (
        duet.build_prompt_analysis_anchor_voting_no_conf(box, audio_class, w, h)
    )
    assert vgg.render("refine.txt", box=box, audio_class=audio_class, max_delta=4, **frame, **refine_values) == (
        duet.build_prompt_refine(box, audio_class, w, h, analysis=dict(ANALYSIS), max_delta_px=4)
    )


def test_an_imported_set_without_its_decoding_is_one_clear_error(sets, example, tmp_path, capsys):
    """A manifest fixes the reference decoding; one that lacks it (edited, or from elsewhere) is refused
    when the set is read, naming the file, not a KeyError when a run builds its settings."""
    for key, value in (("max_new_tokens", None), ("vote_top_p", "0.9"), ("vote_temperature", True)):
        edited = tmp_path / key
        edited.mkdir()
        for f in (sets / "music-solo").iterdir():
            edited.joinpath(f.name).write_bytes(f.read_bytes())
        manifest = json.loads((edited / "manifest.json").read_text())
        manifest.pop(key) if value is None else manifest.update({key: value})
        (edited / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(PromptError, match=f"manifest.json has no number for {key}: run `gar prompts import`"):
            protocol_settings(PromptSet(edited), "reference", 1)
        code = main(["run", str(example[0]), str(example[1]), "--backend", f"scripted:{example[2]}",
                     "--prompts", str(edited), "--protocol", "reference", "--out", str(tmp_path / "o"),
                     "--trace-dir", str(tmp_path / "t")])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("gar: error: ") and err.count("\n") == 1 and key in err, err


def test_import_takes_system_messages_defaults_and_cleanup_from_the_scripts(sets):
    solo, vgg = PromptSet(sets / "music-solo"), PromptSet(sets / "vggss-duet")
    assert solo.render("system_generate.txt") == "System A (solo)."
    assert solo.render("system_analyze.txt") == "Vote system text (B.5)."
    assert vgg.render("system_refine.txt", source_number=2) == "Duet C for source 2."
    assert vgg.render("system_audio.txt") == "Duet B (VGG PAIR)."
    assert solo.manifest["defaults"] == {"n_votes": 7, "tau_av": 0.75, "tau_audio": 0.75}
    assert (solo.manifest["max_new_tokens"], solo.manifest["vote_temperature"]) == (256, 0.4)
    assert (solo.cleanup, PromptSet(sets / "music-duet").cleanup, vgg.cleanup) == ("none", "none", "vggss-duet")
    assert vgg.manifest["analysis_builder"] == "build_prompt_analysis_anchor_voting_no_conf"
    # the import root picks the benchmark's set; a set per benchmark, no ambiguity
    assert PromptSet(sets, benchmark="vggss-duet").directory == sets / "vggss-duet"
    with pytest.raises(PromptError, match="holds the sets"):
        PromptSet(sets)


def _copy_fake(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    for f in FAKE.glob("*.py"):
        (code / f.name).write_text(f.read_text())
    return code


def test_import_refuses_unknown_structure_without_running_anything(tmp_path):
    code = _copy_fake(tmp_path)
    marker = tmp_path / "pwned"
    # a module whose top level would write a file and raise if it were executed
    (code / "prompts_single.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n" + (FAKE / "prompts_single.py").read_text()
    )
    with pytest.raises(PromptImportError, match=r"prompts_single.py:1: unrecognised top-level"):
        import_prompts(code, tmp_path / "out")
    assert not marker.exists()

    (code / "prompts_single.py").write_text((FAKE / "prompts_single.py").read_text())
    (code / "prompts_duet.py").write_text(
        (FAKE / "prompts_duet.py").read_text().replace("{W - 1}", "{W * 2}")  # an expression it does not know
    )
    with pytest.raises(PromptImportError, match=r"prompts_duet.py:\d+: .*unrecognised expression \{W \* 2\}"):
        import_prompts(code, tmp_path / "out")
    assert not (tmp_path / "out" / "music-duet").exists()


@pytest.mark.parametrize(
    "terms, where, line",
    [
        (200_000, "return", 12),  # Python's parser itself gives up (RecursionError during ast construction)
        (5_000, "top", 1),  # parsed, but too deep for ast.unparse in the error message
    ],
)
def test_import_of_a_huge_expression_is_one_line_naming_file_and_line(tmp_path, capsys, terms, where, line):
    code = _copy_fake(tmp_path)
    source = (FAKE / "prompts_single.py").read_text()
    chain = " + ".join(['"a"'] * terms)
    if where == "return":
        start = source.index("def build_prompt_audio_only():")
        end = source.index("\n\n\n", start)
        assert source[:start].count("\n") + 2 == line  # the return is the function's second line
        source = source[:start] + f"def build_prompt_audio_only():\n    return {chain}\n" + source[end:]
    else:
        source = f"PROMPT = {chain}\n" + source
    (code / "prompts_single.py").write_text(source)
    assert main(["prompts", "import", str(code), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gar: error: prompts_single.py:{line}: ") and err.count("\n") == 1, err[:300]
    assert "Traceback" not in err and len(err) < 400


def test_prompts_import_cli_is_one_line_on_bad_input(tmp_path, capsys):
    code = _copy_fake(tmp_path)
    (code / "GAR_music_solo.py").unlink()
    assert main(["prompts", "import", str(code), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gar: error:") and "GAR_music_solo.py not found" in err and "\n" not in err


def test_render_follows_f_string_rules():
    values = {"x": 0.1 + 0.2, "b": [1, 2], "d": {"k": "v"}, "t": True}
    assert render_text("${x} ${x:.3f} ${b} ${d} ${t} ${d!r} $$x", values) == (
        "0.30000000000000004 0.300 [1, 2] {'k': 'v'} True {'k': 'v'} $x"
    )
    with pytest.raises(PromptError, match="uses \\$\\{y\\}"):
        render_text("${y}", values)


def test_a_format_spec_asking_for_megabytes_is_refused_naming_the_template(example, tmp_path, capsys):
    assert render_text("${w:>1000}|${x:.1000f}", {"w": 7, "x": 0.5}).endswith("7|0." + "5" + "0" * 999)
    for spec in (">50000000", ".1001f", "0>99999999999999999999999999", ",>2000"):
        with pytest.raises(PromptError, match=r"prompt t.txt line 2: \$\{w:.*\} asks for a width or precision"):
            render_text("ok\n${w:" + spec + "}", {"w": 1.0}, "t.txt")
    prompts = tmp_path / "p"
    prompts.mkdir()
    for f in PromptSet().directory.glob("*.txt"):
        (prompts / f.name).write_text(f.read_text())
    (prompts / "generate_multi.txt").write_text(
        "Frame ${width:>50000000}\n" + (prompts / "generate_multi.txt").read_text()
    )
    image, audio, script = example
    args = [image, audio, "--sources", 2, "--backend", f"scripted:{script}", "--prompts", prompts]
    code = main([str(a) for a in ["run", *args, "--out", tmp_path / "o", "--trace-dir", tmp_path / "t"]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"gar: error: prompt {prompts / 'generate_multi.txt'} line 1: ${{width:>50000000}}")


# --- the scripts' parsing and aggregation -----------------------------------------------------------

FENCED = '```json\n{"av_consistency": 0.9, "keep": true, "role_tags": ["Bow Hand"], "anchor_votes": [{"anchor": "Bow-Hand", "score": 0.7}]}\n```'
LOOSE = '```\n{"av_consistency": "0.7", "keep": "false", "role_tags": "bow", "anchor_votes": ["x", {"anchor": "bow hand", "score": 1.5}]}\n```'
NESTED = '{"av_consistency": 0.2, "anchor_votes": [{"anchor": "drum", "score": 0.5}], "keep": false}'
FLAT = 'Sure: {"av_consistency": 1.7, "keep": false} done'


@pytest.mark.parametrize(
    "answer, expected",
    [
        (FENCED, {"av_consistency": 0.9, "keep": True, "role_tags": ["Bow Hand"], "anchors": [("Bow-Hand", 0.7)]}),
        # "0.7" is a number to float(); the string "false" is true; a string of tags and a non-dict anchor are skipped
        (LOOSE, {"av_consistency": 0.7, "keep": True, "role_tags": [], "anchors": [("bow hand", 1.5)]}),
        (FLAT, {"av_consistency": 1.7, "keep": False, "role_tags": [], "anchors": []}),
        ('{"keep": 0, "av_consistency": null}', {"av_consistency": 0.0, "keep": False, "role_tags": [], "anchors": []}),
        (
            'assistant\nnope {bad} then {"keep": 1}',
            {"av_consistency": 0.0, "keep": True, "role_tags": [], "anchors": []},
        ),
    ],
)
def test_reference_vote_fields(answer, expected):
    vote, error = ref.parse_vote(answer)
    assert error is None
    got = {
        "av_consistency": vote.av_consistency,
        "keep": vote.keep,
        "role_tags": vote.role_tags,
        "anchors": [(a.anchor, a.score) for a in vote.anchor_votes],
    }
    assert got == expected


@pytest.mark.parametrize("answer", [NESTED, "no json at all", "```\n{broken\n```"])
def test_reference_skips_answers_without_a_findable_object(answer):
    vote, error = ref.parse_vote(answer)
    assert vote is None and "skips this vote" in error


def test_reference_fails_where_the_script_raises_on_a_non_object_vote():
    votes, fatal = ref.parse_votes([FENCED, "```\n[1, 2]\n```"], first=0)
    assert [v.parsed is not None for v in votes] == [True, False]
    assert "a list, not an object" in fatal and "drops this sample" in fatal


def test_reference_aggregate_by_hand():
    answers = [FENCED, LOOSE, NESTED, FLAT, "no json"]
    votes, fatal = ref.parse_votes(answers, 0)
    a = ref.aggregate(votes)
    # parsed: FENCED, LOOSE, FLAT. av = clip(mean(0.9, 0.7, 1.7)) = clip(1.1) = 1.0 (not the mean of clipped values, 0.867)
    assert fatal is None and (a.n_votes, a.n_parsed) == (5, 3)
    assert a.av_consistency == 1.0
    assert a.keep is True  # True, "false" (truthy), False: 2 >= 3 // 2 + 1
    assert a.role_tags == ["bow_hand"]
    # bow_hand: 0.7 and 1.5 clipped to 1.0 -> mean 0.85
    assert [(x.anchor, x.score) for x in a.anchor_votes] == [("bow_hand", 0.85)]
    none = ref.aggregate([Vote(index=0, raw="x", error="no JSON")])
    assert (none.av_consistency, none.keep, none.role_tags, none.anchor_votes) == (0.0, False, [], [])


def test_vggss_duet_cleanup():
    long = "x" * 40
    a = Analysis(
        av_consistency=0.5,
        keep=True,
        role_tags=[long, long + "y", "b", "c", "d"],
        anchor_votes=[AnchorVote(anchor=f"a{i}", score=s) for i, s in enumerate([0.1, 0.9, 0.3, 0.8, 0.5, 0.7])],
        n_votes=3,
        n_parsed=3,
    )
    c = ref.clean_duet(a)
    assert c.role_tags == ["x" * 32, "b", "c", "d"]  # both long tags cut to the same 32 chars: one kept
    assert [v.anchor for v in c.anchor_votes] == ["a1", "a3", "a5", "a4", "a2"]  # top 5 by score


def test_scripts_clip_and_ops():
    assert ref.clip_box([329, 10, 400, 60], 330, 250) == [329, 10, 329, 60]  # no inward growth at the border
    assert ref.clip_box([50, 60, 50, 20], 330, 250) == [50, 20, 51, 60]
    assert ref.apply_ops([100, 100, 200, 200], {"type": "shrink", "amount": -3}, 330, 250, 20) == [103, 103, 197, 197]
    assert ref.apply_ops([100, 100, 200, 200], {"type": "recenter", "target": [10, 10]}, 330, 250, 20) == [
        80, 80, 180, 180
    ]  # fmt: skip
    assert ref.apply_ops([100, 100, 200, 200], {"type": "rotate"}, 330, 250, 20) == [100, 100, 200, 200]
    with pytest.raises(ValueError):
        ref.apply_ops([100, 100, 200, 200], {"type": "expand", "amount": "big"}, 330, 250, 20)


# --- runs --------------------------------------------------------------------------------------------


def _run(media, sets: Path, benchmark: str, sources: int, run_async=False, per_call=None, model_cls=None, **script):
    prompts = PromptSet(sets / benchmark)
    manifest = prompts.manifest["defaults"]
    settings = Settings(
        sources=sources,
        n_votes=5,
        votes_per_call=per_call,
        tau_av=manifest["tau_av"],
        tau_audio=manifest["tau_audio"],
        **protocol_settings(prompts, "reference", sources),
    )
    model = (model_cls or ScriptedChatModel)(script=script)
    if run_async:
        return asyncio.run(arun_clip(media, settings, model, prompts=prompts)).state
    return run_clip(media, settings, model, prompts=prompts).state


def test_reference_run_single(media, sets):
    single = _module("prompts_single")
    w, h = media.image_info.width, media.image_info.height
    state = _run(
        media,
        sets,
        "music-solo",
        1,
        generate=['{"bbox": [10.9, 20, 4000, 220], "description": " a violin "}'],
        audio=['{"audio_class": " Violin ", "audio_confidence_score": "0.9"}'],
        analyze=[FENCED, LOOSE, NESTED, FLAT, "no json"],
        refine=['{"changed": false}'],
    )
    assert state.error is None and state.settings.max_new_tokens == 256
    box = [10, 20, w - 1, 220]  # int() truncates, then the scripts' clip
    # Stage A first (image + audio, no audio class in its prompt), then Stage B (audio only)
    a, b = state.calls_of(None)
    assert (a.stage, a.media, a.system, a.prompt) == (
        "generate",
        ["image", "audio"],
        "System A (solo).",
        single.build_prompt_locate(),
    )
    assert (b.stage, b.media, b.system) == ("audio", ["audio"], "System B (solo).")
    src = state.sources[0]
    assert (src.initial_box, src.audio_class, src.audio_confidence) == (box, "violin", 0.9)
    (votes,) = state.calls_of(0)  # all five votes in one call (n=5), sampled as the scripts sample them
    assert (votes.n, votes.temperature, votes.top_p, votes.system) == (5, 0.4, 0.9, "Vote system text (B.5).")
    assert votes.prompt == single.build_prompt_analysis_anchor_voting(box, "violin", 0.9, w, h)
    assert src.analysis.av_consistency == 1.0 and src.analysis.keep
    assert not src.gate.refine and src.refinement is None and src.box == box


def test_reference_run_duet(media, sets):
    duet = _module("prompts_duet")
    w, h = media.image_info.width, media.image_info.height
    state = _run(
        media,
        sets,
        "music-duet",
        2,
        generate=['{"bboxes": [[0, 0, 100, 100], [329, 10, 400, 60]], "descriptions": ["left", 7]}'],
        audio=['{"audio_classes": ["Cello", ""], "audio_confidence_scores": [0.8, "high"]}'],
        analyze={
            "0": ['{"av_consistency": 0.9, "keep": true}'],
            "1": ['{"av_consistency": 0.3, "keep": false, "role_tags": ["a"]}'],
        },
        refine={"1": ['```json\n{"bbox": [300, 5, 320, 70], "changed": true, "ops": {"type": "rotate"}}\n```']},
    )
    assert state.error is None and state.generate.pairing.startswith("list order")
    s0, s1 = state.sources
    # pairing by list order: box 1 with class 1; an empty class is "unknown", a non-numeric confidence 0
    assert (s0.audio_class, s0.audio_confidence, s1.audio_class, s1.audio_confidence) == ("cello", 0.8, "unknown", 0.0)
    assert s1.initial_box == [329, 10, 329, 60]  # the scripts' clip keeps a zero-width box at the border
    assert state.calls_of(0)[0].prompt == duet.build_prompt_analysis_anchor_voting([0, 0, 100, 100], "cello", 0.8, w, h)
    assert not s0.gate.refine and s0.box == [0, 0, 100, 100]
    refine_call = state.calls_of(1)[-1]
    limit = max(4, round(min(w, h) * 0.08))
    analysis = {"av_consistency": 0.3, "role_tags": ["a"], "anchor_votes": [], "keep": False}
    assert refine_call.prompt == duet.build_prompt_refine([329, 10, 329, 60], "unknown", w, h, analysis, limit)
    assert refine_call.system == "Duet C for source 2." and refine_call.temperature == 0.0
    # unknown ops are ignored, the bbox applies: clip, then every side within +-limit of the previous box
    assert s1.box == [329 - limit, 10 - 5, 320, 70] and s1.refinement.applied == "ops+bbox"


def test_reference_run_fails_where_the_script_would(media, sets):
    state = _run(
        media,
        sets,
        "music-solo",
        1,
        generate=['{"bbox": [1, 2, "3.5", 4]}'],  # int("3.5") raises in the script
        audio=['{"audio_class": "x", "audio_confidence_score": 1}'],
    )
    assert "not an integer" in state.error and "drops this sample" in state.error
    assert [c.stage for c in state.calls_of(None)] == ["generate"]  # Stage B never ran
    state = _run(media, sets, "music-duet", 2, generate=['{"bboxes": [[0, 0, 9, 9]]}'], audio=["{}"])
    assert "not exactly 2 boxes" in state.error


def test_reference_needs_imported_prompts(example, tmp_path, capsys):
    image, audio, script = example
    code = main(["run", str(image), str(audio), "--backend", f"scripted:{script}", "--protocol", "reference",
                 "--out", str(tmp_path / "o"), "--trace-dir", str(tmp_path / "t")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "gar prompts import" in err and "\n" not in err


# --- what the scripts parse: the decoded prompt and answer (run_chat) ----------------------------------


@pytest.mark.parametrize("blank", ["", "  \n\t "])
def test_a_blank_audio_answer_reads_the_prompts_example_json(media, sets, blank):
    # the scripts decode prompt + answer and strip it: with nothing after the assistant header the
    # header split finds no marker and the JSON search runs over the prompt, whose example JSON parses
    state = _run(media, sets, "music-solo", 1, generate=['{"bbox": [1, 2, 30, 40]}'], audio=[blank],
                 analyze=['{"keep": true, "av_consistency": 0.9}'], refine=['{"changed": false}'])  # fmt: skip
    assert state.error is None
    src = state.sources[0]
    assert (src.audio_class, src.audio_confidence) == ("<name>", 0.0)  # the fake prompt's example values
    assert state.generate.audio[0].raw == blank


def test_a_blank_vote_counts_when_the_prompt_holds_an_object(media, sets):
    # the vote prompt quotes the audio class; a class "{}" makes the first {...} of the prompt valid JSON,
    # so an empty vote is a vote ({} -> av 0, keep false); with another class it is skipped
    def analysis(audio_class):
        # fenced: unfenced, the non-greedy match would stop inside "{}" and find no JSON
        audio = "```json\n" + json.dumps({"audio_class": audio_class, "audio_confidence_score": 0.9}) + "\n```"
        state = _run(media, sets, "music-solo", 1, generate=['{"bbox": [1, 2, 30, 40]}'], audio=[audio],
                     analyze=["", "", "", '{"keep": true, "av_consistency": 1}'], refine=['{"changed": false}'])  # fmt: skip
        assert state.error is None
        return state.sources[0].analysis

    counted, skipped = analysis("{}"), analysis("violin")
    # five votes (the last answer repeats): three blank, two keep
    assert (counted.n_votes, counted.n_parsed, counted.keep) == (5, 5, False)  # 2 keeps of 5: no majority
    assert (skipped.n_votes, skipped.n_parsed, skipped.keep) == (5, 2, True)


def test_only_the_text_after_the_last_inst_marker_counts_in_every_stage(media, sets):
    w = media.image_info.width
    state = _run(
        media,
        sets,
        "music-solo",
        1,
        generate=['{"bbox": [0, 0, 5, 5]} [/INST] {"bbox": [10, 20, 110, 220], "description": "late"}'],
        audio=['{"audio_class": "drum"} [/INST] {"audio_class": "violin", "audio_confidence_score": 0.2}'],
        analyze=['{"keep": true, "av_consistency": 1} [/INST] {"keep": false}'],
        refine=['{"draft": true} [/INST] ```json\n{"bbox": [12, 22, 112, 222]}\n```'],
    )
    assert state.error is None
    src = state.sources[0]
    assert (src.initial_box, src.description) == ([10, 20, 110, 220], "late")
    assert (src.audio_class, src.audio_confidence) == ("violin", 0.2)
    assert src.analysis.keep is False and src.analysis.av_consistency == 0.0
    assert src.refinement.applied == "bbox" and src.box == [12, 22, 112, 222] and w > 112
    # an answer that is nothing but the marker leaves an empty text: no JSON, as in the script
    assert ref.script_text("x [/INST]", ref.NOTHING_SENT) == ""


def test_duet_descriptions_keep_their_json_values(media, sets):
    state = _run(
        media,
        sets,
        "music-duet",
        2,
        generate=['{"bboxes": [[0, 0, 100, 100], [10, 10, 60, 60]], "descriptions": [null, 3]}'],
        audio=['{"audio_classes": ["cello", "flute"], "audio_confidence_scores": [0.9, 0.9]}'],
        analyze=['{"keep": true, "av_consistency": 1}'],
    )
    assert state.error is None
    assert [s.description for s in state.sources] == [None, 3]
    assert state.generate.boxes[0].value["descriptions"] == [None, 3]
    state = _run(media, sets, "music-duet", 2,
                 generate=['{"bboxes": [[0, 0, 100, 100], [10, 10, 60, 60]], "descriptions": [" left ", ["a"]]}'],
                 audio=['{"audio_classes": ["cello", "flute"]}'], analyze=['{"keep": true}'])  # fmt: skip
    assert [s.description for s in state.sources] == [" left ", ["a"]]  # strings unstripped, as the script keeps them


STARTED: list[tuple] = []  # (stage, source) of each call of _Timed, as it starts


class _Timed(ScriptedChatModel):
    """Scripted answers that take a while (source 1's votes longest), each call logged as it starts."""

    def _delay(self, run_manager) -> tuple[float, tuple]:
        meta = (run_manager.metadata if run_manager else None) or {}
        key = (meta.get("gar_stage"), meta.get("gar_source"))
        STARTED.append(key)
        return (0.2 if key == ("analyze", 0) else 0.02), key

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        time.sleep(self._delay(run_manager)[0])
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
        await asyncio.sleep(self._delay(run_manager)[0])
        return super()._generate(messages, stop, run_manager, **kwargs)


@pytest.mark.parametrize("run_async", [False, True], ids=["invoke", "ainvoke"])
def test_duet_sources_vote_one_after_another_then_refine(media, sets, run_async):
    # the scripts' order: all of source 1's votes (in passes of 2 here), all of source 2's, then Refine;
    # source 1's votes are the slow ones, so branches left to run side by side would interleave
    STARTED.clear()
    state = _run(
        media,
        sets,
        "music-duet",
        2,
        run_async=run_async,
        per_call=2,
        model_cls=_Timed,
        generate=['{"bboxes": [[0, 0, 100, 100], [10, 10, 60, 60]], "descriptions": ["a", "b"]}'],
        audio=['{"audio_classes": ["cello", "flute"], "audio_confidence_scores": [0.9, 0.9]}'],
        analyze=['{"keep": false, "av_consistency": 0.1}'],
        refine=['{"changed": false}'],
    )
    result = run_result(state)
    assert result.error is None and (result.refined, result.skipped) == (2, 0)
    started = list(STARTED)
    assert started[:8] == [("generate", None), ("audio", None), *[("analyze", 0)] * 3, *[("analyze", 1)] * 3]
    assert sorted(started[8:]) == [("refine", 0), ("refine", 1)]


def test_a_branch_that_raises_releases_the_waiting_one(media, sets, monkeypatch):
    # a bug in source 1's branch: source 2's branch waits for source 1's votes and must not wait forever
    parse = ref.parse_votes

    def broken(answers, first, sent=None):
        if sent is not None and sent.source == 0:
            raise ValueError("a bug of ours")
        return parse(answers, first, sent)

    monkeypatch.setattr(ref, "parse_votes", broken)
    outcome: list = []

    def run():
        try:
            _run(media, sets, "music-duet", 2, model_cls=_Timed,
                 generate=['{"bboxes": [[0, 0, 100, 100], [10, 10, 60, 60]]}'], audio=["{}"], analyze=["{}"])  # fmt: skip
        except ValueError as e:
            outcome.append(str(e))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and outcome == ["a bug of ours"]


NON_OBJECT_VOTE = '```json\n[{"keep": true}]\n```'


@pytest.mark.parametrize("run_async", [False, True], ids=["invoke", "ainvoke"])
@pytest.mark.parametrize("bad", [0, 1])
def test_a_non_object_duet_vote_drops_the_clip_after_that_sources_votes(media, sets, bad, run_async):
    good = '{"keep": false, "av_consistency": 0.1}'  # every source would go to Refine
    analyze = {"0": [good], "1": [good]}
    analyze[str(bad)] = [good, NON_OBJECT_VOTE, good]  # the script collects all N votes, then raises
    state = _run(
        media,
        sets,
        "music-duet",
        2,
        generate=['{"bboxes": [[0, 0, 100, 100], [10, 10, 60, 60]], "descriptions": ["a", "b"]}'],
        audio=['{"audio_classes": ["cello", "flute"], "audio_confidence_scores": [0.9, 0.9]}'],
        analyze=analyze,
        refine=['{"bbox": [1, 1, 50, 50]}'],
        run_async=run_async,  # gar eval's way: the branches are tasks of one event loop
    )
    result = run_result(state)
    assert "not an object" in result.error and "drops this sample" in result.error
    # the script's order: source 1's votes, source 2's votes, then Refine; it stops at the raise
    asked = [(c.stage, c.source, c.n) for c in state.calls]
    assert asked == [("generate", None, 1), ("audio", None, 1), *[("analyze", k, 5) for k in range(bad + 1)]]
    assert (result.refined, result.skipped) == (0, 0)  # the scripts count no gate of a dropped clip


# --- fixes in both protocols -------------------------------------------------------------------------


def test_exif_rotation_gives_one_frame_to_model_and_boxes(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: 40x20 stored -> 20x40 shown
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "phone.jpg", exif=exif)
    rgb, shown, mime, info = load_image(tmp_path / "phone.jpg")
    assert rgb.shape[:2] == (40, 20) and (info.width, info.height) == (20, 40)
    # the bytes the model gets are in the same frame, whatever the decoder does with EXIF
    with Image.open(io.BytesIO(shown)) as sent:
        assert sent.size == (20, 40) and not sent.getexif().get(0x0112)


def test_gt_goes_to_the_grid_through_image_pixels():
    # x1 = 0.100781 on a 640-wide frame: the script rounds to pixels first (64.49984 -> 64), then to the
    # grid (64 * 224/640 = 22.4 -> 22); rounding once would give round(22.575) = 23.
    gt = [0.100781, 0.2, 0.5, 0.6]
    assert box_to_grid(gt, 224, (640, 360))[0] == 22
    assert box_to_grid(gt)[0] == 23
    # a prediction at pixel 180 of a 1280-wide frame: round(180 * (224 / 1280)) = round(31.499999999999996) = 31
    assert box_to_grid([180 / 1280, 0.1, 0.5, 0.5], 224, (1280, 720))[0] == 31
    score = SampleScore(id="s", pred_boxes=[gt], gt_boxes=[gt], image_size=[640, 360])
    gt_mask, pred_mask = score.masks()
    assert np.flatnonzero(gt_mask.any(axis=0))[0] == 22


def test_protocol_settings_checks_sources(sets):
    with pytest.raises(PromptError, match="with 2 source"):
        protocol_settings(PromptSet(sets / "music-duet"), "reference", 1)
    with pytest.raises(PromptError, match="pass --protocol reference"):
        protocol_settings(PromptSet(sets / "music-duet"), "gar", 2)


def test_settings_from_options_is_what_every_command_records(sets):
    # gar run, gar track, gar eval run and the notebook API all build a run's Settings here
    duet = PromptSet(sets / "music-duet")
    opts = {"graph": "gar", "n_votes": 3, "votes_per_call": None, "tau_av": 0.4, "tau_audio": 0.6}
    s = Settings.from_options(duet, "reference", "openai", "Qwen/X", sources=2, **opts)
    fixed = protocol_settings(duet, "reference", 2)
    assert s.backend == "openai --model Qwen/X" and (s.sources, s.n_votes, s.tau_av, s.tau_audio) == (2, 3, 0.4, 0.6)
    assert {k: getattr(s, k) for k in fixed} == fixed and s.max_new_tokens != Settings().max_new_tokens
    plain = Settings.from_options(PromptSet(), "gar", "scripted:a.json", None, sources=1, **opts)
    assert plain.backend == "scripted:a.json" and plain.protocol == "gar" and plain.max_new_tokens == 512
    with pytest.raises(PromptError, match="with 2 source"):
        Settings.from_options(duet, "reference", "openai", None, sources=1, **opts)


def test_eval_reference_records_the_protocol(sets, example, tmp_path):
    if not (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "annotations" / "music_solo.json").exists():
        pytest.skip("../shared/benchmarks is absent")
    import shutil

    ann = json.loads(
        (Path(__file__).resolve().parents[2] / "shared/benchmarks/annotations/music_solo.json").read_text()
    )
    (tmp_path / "frames").mkdir()
    (tmp_path / "audio").mkdir()
    for e in ann[:2]:
        shutil.copy(example[0], tmp_path / "frames" / f"{e['file']}.jpg")
        shutil.copy(example[1], tmp_path / "audio" / f"{e['file']}.wav")
    (tmp_path / "gt.json").write_text(json.dumps(ann[:2]))
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"generate": ['{"bbox": [1, 2, 30, 40]}'], "audio": ['{"audio_class": "x"}'],
                                  "analyze": ['{"keep": true}'], "refine": ['{"changed": false}']}))  # fmt: skip
    args = ["eval", "--dataset", "music-solo", "--frames", str(tmp_path / "frames"), "--audio", str(tmp_path / "audio"),
            "--gt", str(tmp_path / "gt.json"), "--out", str(tmp_path / "out"), "--backend", f"scripted:{script}",
            "--protocol", "reference", "--prompts", str(sets), "--no-vis"]  # fmt: skip
    assert main(args) == 0
    config = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert config["settings"]["protocol"] == "reference" and config["settings"]["max_new_tokens"] == 256
    assert config["settings"]["prompts_dir"].endswith("music-solo")
    sample = json.loads(next((tmp_path / "out" / "samples").glob("*.json")).read_text())
    assert sample["score"]["image_size"] == [sample["result"]["image"]["width"], sample["result"]["image"]["height"]]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))

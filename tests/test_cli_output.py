"""What the CLI prints: untrusted text shown as text, output that explains itself, no repetition."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from pathlib import Path

import pytest
from helpers import audio_answer, boxes_answer, vote, write_script
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gar_agent.cli.app import main
from gar_agent.cli.safe_text import cut, safe, visible

ESC = "\x1b"
TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title when printed raw
CLEAR = "\x1b[2J"  # clears the screen when printed raw
CLASS = f"violin[/]{TITLE}"
TAGS = ("[/x]", "[bold]loud")


def gar(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def hostile(tmp_path) -> Path:
    """Answers holding Rich markup and terminal escapes in every field the views show."""
    return write_script(
        tmp_path / "hostile.json",
        audio=[audio_answer([CLASS], [0.5])],
        generate=[boxes_answer([[38, 70, 128, 215]]) + CLEAR],  # raw escapes outside the JSON too
        analyze=[vote(0.9, True, tags=TAGS, anchors=(("[/]", 0.9),)) + CLEAR],
        refine=[
            json.dumps({"bbox": [40, 72, 130, 217], "changed": True, "refined_description": f"A [red]violin{TITLE}."})
        ],
    )


def no_raw_escapes(text: str) -> None:
    """Nothing a terminal would act on: no ESC, no BEL, no other control character but newlines."""
    bad = sorted({hex(ord(c)) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})
    assert not bad, bad


def test_markup_and_escapes_in_answers_are_shown_as_text(example, hostile, tmp_path, capsys):
    image, audio, _ = example
    traces = tmp_path / "traces"
    code, out, err = gar(capsys, "run", image, audio, "--backend", f"scripted:{hostile}", "--out", tmp_path / "o",
                         "--trace-dir", traces)  # fmt: skip
    assert code == 0, err
    no_raw_escapes(out + err)
    assert "violin[/]\\x1b]0;pwned\\x07" in out  # the class as it is, its escapes visible
    assert "[/x], [bold]loud" in out and "A [red]violin\\x1b]0;pwned\\x07." in out and '"thing"}\\x1b[2J' in out
    doc = json.loads((tmp_path / "o" / "result.json").read_text())
    assert doc["sources"][0]["audio_class"] == CLASS  # the result keeps the answer as it was
    [run] = [p.parent.name for p in traces.glob("*/trace.json")]

    code, out, err = gar(capsys, "trace", "show", run, "--trace-dir", traces)
    assert code == 0, err
    no_raw_escapes(out + err)
    assert "violin[/]\\x1b]0;pwned\\x07" in out and "[/x], [bold]loud" in out
    code, out, err = gar(capsys, "trace", "list", traces)
    assert code == 0, err
    no_raw_escapes(out + err)


def test_markup_and_escapes_in_track(hostile, tmp_path, capsys):
    from media_files import make_video

    video = make_video(tmp_path / "clip.mp4", seconds=1.0)
    code, out, err = gar(capsys, "track", video, "--every", 1, "--window", 1, "--n-votes", 1, "--out",
                         tmp_path / "track", "--backend", f"scripted:{hostile}")  # fmt: skip
    assert code == 0, err
    no_raw_escapes(out + err)
    timeline = json.loads((tmp_path / "track" / "timeline.json").read_text())
    assert timeline["times"][0]["sources"][0]["audio_class"] == CLASS


def test_a_display_failure_keeps_the_run(example, tmp_path, capsys, monkeypatch):
    """A bug in a view is one note on stderr: the run goes on and its result and trace are written."""
    import gar_agent.cli.views as views

    def broken(*a, **k):
        raise ValueError("a view bug")

    monkeypatch.setattr(views, "node_view", broken)
    image, audio, script = example
    code, _, err = gar(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--sources", 2,
                       "--out", tmp_path / "o", "--trace-dir", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    assert "could not display step generate (ValueError: a view bug)" in err
    assert (tmp_path / "o" / "result.json").is_file() and list((tmp_path / "t").glob("*/trace.json"))


# --- the helper itself, on any text -------------------------------------------------------------


def render(renderable) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=100, color_system=None, markup=False, emoji=False).print(renderable)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_visible_never_emits_a_control_character(text):
    for one_line in (False, True):
        shown = visible(text, one_line)
        kept = "" if one_line else "\n\t"
        assert not [c for c in shown if unicodedata.category(c) in ("Cc", "Cs") and c not in kept]
        assert not re.search("[\u202a-\u202e\u2066-\u2069\u2028\u2029]", shown)
        shown.encode("utf-8")  # no lone surrogate left to make stdout's encoder raise


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from(["", "bold", "red", "yellow"]))
def test_safe_text_renders_any_text_literally(text, style):
    out = render(safe(text, style=style, one_line=True))  # never raises (MarkupError, UnicodeEncodeError)
    no_raw_escapes(out)
    if all(c.isprintable() and c.isascii() and c != "\\" for c in text) and text.strip():
        assert text.strip() in out.replace("\n", "") or len(text) > 90  # markup-like text kept as is


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=600), st.integers(min_value=1, max_value=300))
def test_cut_keeps_at_most_limit_and_says_the_length(text, limit):
    shown = cut(text, limit)
    stripped = text.strip()
    if len(stripped) <= limit:
        assert shown == stripped
    else:
        assert shown.startswith(stripped[:limit]) and shown.endswith(f"… ({len(stripped):,} chars)")


# --- issue 20.4: --step --png, --version, the viewer's install hint, the video in --json, the build ------


def demo_run(example, tmp_path, capsys, script: Path | None = None) -> tuple[Path, str]:
    """The demo's duet run with scripted answers: its trace directory and run id."""
    image, audio, demo_script = example
    script = script or demo_script
    traces = tmp_path / "runs"
    code, _, err = gar(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--sources", 2,
                       "--out", tmp_path / "o", "--trace-dir", traces)  # fmt: skip
    assert code == 0, err
    [run] = [p.parent.name for p in traces.glob("*/trace.json")]
    return traces, run


def test_trace_show_step_png_writes_that_steps_overlay(example, tmp_path, capsys):
    traces, run = demo_run(example, tmp_path, capsys)
    code, out, err = gar(capsys, "trace", "show", run, "--step", 2, "--png", tmp_path / "png", "--trace-dir", traces)
    assert code == 0, err
    [written] = [p.name for p in (tmp_path / "png").iterdir()]  # step 2 only (its node: analyze or gate,
    assert re.fullmatch(r"step_002_(analyze|gate)\.png", written)  # as the parallel branches ran)
    assert "wrote 1 overlay to" in out
    code, out, _ = gar(capsys, "trace", "show", run, "--png", tmp_path / "all", "--trace-dir", traces)
    assert code == 0 and len(list((tmp_path / "all").iterdir())) == 6


def test_version(capsys):
    from gar_agent import __version__

    code, out, _ = gar(capsys, "--version")
    assert code == 0 and out.strip() == f"gar-agent {__version__}"


class FakeDist:
    def __init__(self, direct_url: str | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return self.direct_url if name == "direct_url.json" else None


@pytest.mark.parametrize(
    ("direct_url", "command"),
    [
        ('{"dir_info": {"editable": true}, "url": "file:///src/gar"}', "pip install -e '.[view]'"),
        (None, "pip install 'gar-agent[view]'"),  # a wheel from an index: no direct_url.json
        (
            '{"archive_info": {}, "url": "file:///dist/gar_agent-0.1.0-py3-none-any.whl"}',
            "pip install 'gar-agent[view]'",
        ),
    ],
)
def test_the_viewer_advice_matches_the_install(monkeypatch, direct_url, command):
    from gar_agent import extras
    from gar_agent.cli.view_cmd import missing_extra

    monkeypatch.setattr(extras.metadata, "distribution", lambda name: FakeDist(direct_url))
    assert missing_extra() == f"the viewer needs its extra: {command} (starlette, uvicorn)"


def test_run_video_json_names_the_video_and_time(tmp_path, capsys):
    from media_files import make_video, script_for

    video = make_video(tmp_path / "clip.mp4", seconds=2.0)
    code, out, err = gar(capsys, "run", video, "--at", 1.5, "--json", "--n-votes", 1, "--out", tmp_path / "o",
                         "--trace-dir", tmp_path / "t", "--backend", f"scripted:{script_for(tmp_path)}")  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["video"]["path"] == str(video) and doc["video"]["at_s"] == 1.5
    assert 1.4 < doc["video"]["frame_time_s"] <= 1.5 and doc["video"]["window_s"] == [0.0, 2.0]
    assert doc["image"]["path"].endswith("frame.png") and doc["audio"]["path"].endswith(
        "audio.wav"
    )  # kept as they were
    assert json.loads((tmp_path / "o" / "result.json").read_text()) == doc


def test_python_m_build_is_not_shadowed_by_a_build_folder(tmp_path):
    """`python -m build` in a checkout: the ignored build/ folder setuptools leaves is a namespace
    package named `build`, which Python runs instead of the missing frontend ("'build' is a package
    and cannot be directly executed"). The dev extra installs the frontend, which takes precedence."""
    import subprocess
    import sys

    (tmp_path / "build" / "lib" / "gar_agent").mkdir(parents=True)
    done = subprocess.run([sys.executable, "-m", "build", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "build" in done.stdout


# --- issue 20.5: no repetition, step order ----------------------------------------------------------


def test_live_run_does_not_reprint_the_branches(example, tmp_path, capsys):
    image, audio, script = example
    code, out, err = gar(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--sources", 2,
                         "--out", tmp_path / "o", "--trace-dir", tmp_path / "t")  # fmt: skip
    assert code == 0, err
    assert "localize" not in out
    assert out.count("analyze_multi.txt") == 2 and out.count("refine_multi.txt") == 1  # each call shown once


def test_trace_show_prints_in_step_order(example, tmp_path, capsys):
    traces, run = demo_run(example, tmp_path, capsys)
    code, out, err = gar(capsys, "trace", "show", run, "--trace-dir", traces)
    assert code == 0, err
    order = [out.index(p) for p in ("─ generate ", "source 0: violin", "─ analyze · source 0", "source 1: drum",
                                    "─ refine · source 1")]  # fmt: skip
    assert order == sorted(order), order


# --- issue 20.6: replay and fork say what changed ---------------------------------------------------


def test_replay_names_its_parent_the_change_and_the_diff(example, tmp_path, capsys, monkeypatch, checkpointer):
    # the demo's answers, but Refine moves the violin's box (a replay that refines it changes its box)
    answers = json.loads(example[2].read_text())
    answers["refine"]["0"] = ['{"bbox": [30, 60, 120, 210], "changed": true}']
    script = write_script(tmp_path / "script.json", **answers)
    traces, run = demo_run(example, tmp_path, capsys, script)
    parent = next(traces.glob("*/trace.json"))
    monkeypatch.chdir(tmp_path)  # where traces/ would be
    code, out, err = gar(capsys, "replay", parent, "--checkpoints", checkpointer, "--tau-av", 0.9,
                         "--backend", f"scripted:{script}", "--out", tmp_path / "r")  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"replay of run {run} ({parent}) · changed: tau_av 0.5 -> 0.9"
    [child] = [p for p in traces.glob("*/trace.json") if p != parent]  # beside the parent, not in ./traces
    assert not (tmp_path / "traces").exists()
    assert lines[-1] == f"compare: gar trace diff {parent} {child}"
    # tau_av 0.9 sends the violin (av 0.89) to Refine too: its final box changes, said with its IoU
    assert lines[-2] == (
        f"final boxes changed from run {run}: source 0 [38, 70, 128, 215] -> [30, 60, 120, 210] "
        "(IoU 0.762 with the parent's)"
    )
    code, out, _ = gar(capsys, "replay", parent, "--checkpoints", checkpointer, "--out", tmp_path / "r2")
    assert code == 0 and f"final boxes unchanged from run {run}" in out and "· nothing changed" in out


def test_fork_shows_the_edited_box(example, tmp_path, capsys, checkpointer):
    traces, run = demo_run(example, tmp_path, capsys)
    script = example[2]
    code, out, err = gar(capsys, "fork", run, "--checkpoints", checkpointer, "--box", "0=40,60,120,200",
                         "--trace-dir", traces, "--backend", f"scripted:{script}", "--out", tmp_path / "f")  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[0].endswith(
        "after generate · edits: source 0 initial box [38, 70, 128, 215] -> [40, 60, 120, 200]"
    )
    generate = out[out.index("─ generate ") : out.index("─ analyze ")]
    assert "[40, 60, 120, 200] (fork edit; Generate gave [38, 70, 128, 215])" in " ".join(
        line.strip("│ ") for line in generate.splitlines()
    )
    assert "source 0 [38, 70, 128, 215] -> [40, 60, 120, 200] (IoU 0.751 with the parent's)" in out


def test_overlays_number_sources_as_the_tables_do(example, tmp_path, capsys):
    from gar_agent.overlay import result_items
    from gar_agent.result import RunResult

    demo_run(example, tmp_path, capsys)
    result = RunResult.model_validate_json((tmp_path / "o" / "result.json").read_text())
    assert [item["label"] for item in result_items(result)] == ["source 0: violin", "source 1: drum (refined)"]


# --- issue 20.7: an unusable answer shown once, cut, escaped ----------------------------------------

NOISE = '\ufffdThedesaul\x19\x0512\x04 "bo' * 150  # what a random-weight model answers: 2,850 chars


def test_an_unusable_answer_is_shown_once_cut_and_escaped(example, tmp_path, capsys):
    image, audio, _ = example
    script = write_script(tmp_path / "noise.json", audio=["A" + NOISE], generate=["B" + NOISE, "C" + NOISE])
    code, out, err = gar(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--n-votes", 1,
                         "--out", tmp_path / "o", "--trace-dir", tmp_path / "t")  # fmt: skip
    assert code == 1 and "the box answer was unusable after 2 tries" in err
    no_raw_escapes(out + err)
    for first in "ABC":  # each answer once (the repair prompt quoting it says so instead of repeating it)
        assert out.count(f"{first}\ufffdThedesaul\\x19\\x0512\\x04") == 1, first
    assert out.count(f"… ({len(NOISE) + 1:,} chars)") == 3 and "unusable answer: " not in out
    assert "answer (unusable: no JSON object found in the answer): " in out and "«the answer above»" in out
    width = {len(line) for line in out.splitlines() if line.startswith("│")}
    assert len(width) == 1, width  # the panel's borders line up


def test_help_shows_flags_without_a_bool_metavar(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out and "<bool>" not in out and "--protocol" in out


def test_piped_output_is_140_columns_unless_columns_says_otherwise(tmp_path):
    import os
    import subprocess
    import sys

    widths = {}
    for columns in (None, "100"):
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        if columns:
            env["COLUMNS"] = columns
        out = subprocess.run([sys.executable, "-m", "gar_agent", "demo", "--out", str(tmp_path / "d"),
                              "--trace-dir", str(tmp_path / "t")], env=env, capture_output=True, text=True)  # fmt: skip
        assert out.returncode == 0, out.stderr
        widths[columns] = max(len(line) for line in out.stdout.splitlines())
    assert widths == {None: 140, "100": 100}

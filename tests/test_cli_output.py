"""What the CLI prints: untrusted text shown as text, output that explains itself, no repetition."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from pathlib import Path

import pytest
from conftest import vote, write_script
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from test_graph import audio_answer, boxes_answer

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
    from test_video import make_video

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

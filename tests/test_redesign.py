"""Errors with a home, bugs that stay bugs, and what a new user trips over (issue: one run path)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gar_agent import calls
from gar_agent.cli.app import main
from gar_agent.errors import BackendError, UserError
from gar_agent.media import MediaError
from gar_agent.models.scripted import ScriptedChatModel
from gar_agent.prompts import PromptError
from gar_agent.runner import run_clip
from gar_agent.state import Settings
from gar_agent.topology import GraphError
from gar_agent.trace.store import TraceError
from tests.conftest import vote


def _model(**extra):
    script = {
        "audio": ['{"audio_class": "violin", "audio_confidence_score": 0.9}', '{"audio_class": "drum"}'],
        "generate": ['{"bbox": [10, 20, 110, 120], "description": "a violin"}'],
        "analyze": [vote()],
        "refine": ['{"changed": false}'],
        **extra,
    }
    return ScriptedChatModel(script=script)


def test_user_errors_share_one_base():
    for cls in (MediaError, BackendError, PromptError, GraphError, TraceError):
        assert issubclass(cls, UserError)


def test_a_bug_in_our_answer_handling_is_a_crash_not_a_failed_call(media, monkeypatch):
    def broken(message):
        raise ZeroDivisionError("a bug of ours")

    monkeypatch.setattr(calls, "answer_text", broken)
    with pytest.raises(ZeroDivisionError, match="a bug of ours"):
        run_clip(media, Settings(n_votes=1), _model())


def test_what_the_model_raises_fails_the_call_and_the_run(media):
    class Exploding(ScriptedChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise ConnectionError("server went away")

    outcome = run_clip(media, Settings(n_votes=1), Exploding(script={}))
    assert "ConnectionError: server went away" in outcome.state.error
    assert outcome.state.calls_of(None)[0].error == "ConnectionError: server went away"


def test_the_cli_keeps_the_traceback_of_a_bug(example, tmp_path, monkeypatch):
    image, audio, script = example
    from gar_agent.protocols import gar as protocol

    def broken(answers, first, sent=None):
        raise ValueError("a bug of ours that happens to be a ValueError")

    monkeypatch.setattr(protocol, "parse_votes", broken)
    with pytest.raises(ValueError, match="a bug of ours"):
        main(["run", str(image), str(audio), "--sources", "2", "--backend", f"scripted:{script}",
              "--out", str(tmp_path / "o"), "--trace-dir", str(tmp_path / "t")])  # fmt: skip


def test_scripted_answers_start_over_for_every_run(media):
    model = _model()
    first = run_clip(media, Settings(n_votes=1), model).state
    second = run_clip(media, Settings(n_votes=1), model).state
    # each run (an evaluation sample) consumes the lists from the start: --ids/--limit/resume agree
    assert first.sources[0].audio_class == second.sources[0].audio_class == "violin"


def test_votes_per_call_above_n_is_refused(example, tmp_path, capsys):
    image, audio, script = example
    code = main(["run", str(image), str(audio), "--n-votes", "5", "--votes-per-call", "10",
                 "--backend", f"scripted:{script}", "--out", str(tmp_path / "o")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == (
        "gar: error: --votes-per-call 10 is more than --n-votes 5: a call asks at most the N votes of a source; "
        "give at most 5"
    )


def test_saved_files_are_as_readable_as_result_json(example, tmp_path):
    image, audio, script = example
    code = main(["run", str(image), str(audio), "--sources", "2", "--backend", f"scripted:{script}",
                 "--out", str(tmp_path / "o"), "--trace-dir", str(tmp_path / "t"), "--json"])  # fmt: skip
    assert code == 0
    (trace,) = (tmp_path / "t").glob("*/trace.json")
    result = tmp_path / "o" / "result.json"
    assert stat.S_IMODE(trace.stat().st_mode) == stat.S_IMODE(result.stat().st_mode)


def test_undecodable_audio_names_the_file_not_a_buffer(example, tmp_path, capsys):
    image, _, script = example
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"not audio at all")
    assert main(["run", str(image), str(bad), "--backend", f"scripted:{script}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "noise.wav" in err and "BytesIO" not in err and "0x" not in err


def test_trace_list_takes_the_flag_its_error_names(tmp_path, capsys):
    assert main(["trace", "list", "--trace-dir", str(tmp_path / "none")]) == 2
    assert "--trace-dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["trace", "list", "--trace-dir", str(tmp_path / "empty")]) == 0


def test_help_shows_flags_without_a_bool_metavar(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out and "<bool>" not in out and "--protocol" in out


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(pytest.main([__file__])))


def test_an_uncached_hub_model_offline_fails_at_once(monkeypatch):
    import socket
    import time

    from gar_agent.models import qwen_omni

    def unreachable(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"not in the local Hugging Face cache .* cannot be reached \(offline\)"):
        qwen_omni._read_config("someone/not-a-cached-model")
    assert time.perf_counter() - start < 5  # no retries against an unreachable hub


def test_a_researchers_own_node_is_shown_live_and_by_trace_show(example, tmp_path, capsys):
    image, audio, _ = example
    keep = '{"av_consistency": 0.9, "keep": true}'
    script = tmp_path / "s.json"
    script.write_text(json.dumps({
        "audio": ['{"audio_class": "violin", "audio_confidence_score": 0.95}'],
        "generate": ['{"bbox": [10, 20, 110, 220], "description": "a violin"}'],
        "analyze": [keep] * 5 + ['{"av_consistency": 0.2, "keep": false}'],  # the 6th: the second opinion
        "refine": ['{"bbox": [12, 22, 112, 222]}'],
    }))  # fmt: skip
    graph = str(Path(__file__).parent / "data" / "second_opinion.py")
    args = ["run", str(image), str(audio), "--graph", graph, "--backend", f"scripted:{script}",
            "--trace-dir", str(tmp_path / "t"), "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(args) == 0
    live = capsys.readouterr().out
    assert "second_opinion · source 0" in live and "gate now: refine (second opinion: keep is false)" in live
    (run,) = (tmp_path / "t").glob("*/trace.json")
    assert main(["trace", "show", str(run)]) == 0
    shown = capsys.readouterr().out
    assert "second_opinion · source 0" in shown and "gate now: refine (second opinion: keep is false)" in shown
    assert "-> [12, 22, 112, 222] · refined" in shown  # what happened, not a gate panel saying "skip"


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

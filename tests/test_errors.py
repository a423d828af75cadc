"""Errors: a user's mistake is one line (every such error shares one base), what the model raises fails
its call and the run, and a bug of ours stays a crash with its traceback, from Python and from the CLI."""

from __future__ import annotations

import pytest
from helpers import vote

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

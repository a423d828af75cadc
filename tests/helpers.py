"""Helpers shared by the test files: scripted model answers, script files and `gar` called in-process.

Plain functions, imported as `from helpers import ...` (tests/ is on sys.path, as for conftest.py);
fixtures live in conftest.py, so no test file imports another.
"""

from __future__ import annotations

import json
from pathlib import Path

from gar_agent.cli.app import main
from gar_agent.models.scripted import ScriptedChatModel


def vote(av=0.8, keep=True, tags=("body",), anchors=(("body", 0.9),)) -> str:
    """A well-formed analysis answer."""
    return json.dumps(
        {
            "av_consistency": av,
            "keep": keep,
            "role_tags": list(tags),
            "anchor_votes": [{"anchor": a, "score": s} for a, s in anchors],
        }
    )


def scripted(**stages) -> ScriptedChatModel:
    """A scripted model from stage answers given as keyword arguments."""
    return ScriptedChatModel(script=stages)


def write_script(path: Path, **stages) -> Path:
    """A script file for --backend scripted:FILE."""
    path.write_text(json.dumps(stages))
    return path


# a recorded run's five Analyze answers (conftest's `recorded`): 4 parse, av 0.6, keep 3 of 4 -> skip
# with tau_av 0.4 and audio confidence 0.8
VOTES = [vote(0.9, True), vote(0.7, True), vote(0.5, True), "not json", vote(0.3, False)]


def boxes_answer(boxes) -> str:
    """A Generate answer naming one box (single) or several (duet and more)."""
    if len(boxes) == 1:
        return json.dumps({"bbox": boxes[0], "description": "thing"})
    return json.dumps({"bboxes": boxes, "descriptions": [f"thing {i}" for i in range(len(boxes))]})


def audio_answer(classes, confs) -> str:
    """An audio-stage answer naming one class (single) or several."""
    if len(classes) == 1:
        return json.dumps({"audio_class": classes[0], "audio_confidence_score": confs[0]})
    return json.dumps({"audio_classes": classes, "audio_confidence_scores": confs})


def cli(capsys, *args) -> tuple[int, str, str]:
    """`gar ARGS` in-process: (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def replay_cli(capsys, run_id, traces, checkpointer, *args) -> tuple[int, str, str]:
    """`gar replay RUN ARGS` of a run recorded in `traces`, checkpointed in the store `checkpointer` names."""
    return cli(capsys, "replay", run_id, "--checkpoints", checkpointer, "--trace-dir", traces, *args)

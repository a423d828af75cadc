"""Shared fixtures: a generated example clip, the tiny Qwen2.5-Omni checkpoint, a recorded run and the
checkpoint stores replay and fork run against. Plain helpers (scripted answers, `gar` calls) are in helpers.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# pytest-xdist workers export COLUMNS=80. Piped gar output honours COLUMNS (else 140 columns), so
# without this the tests that read tables would see a page narrower than any pipe gives them. It must
# run before gar_agent.cli is imported below: its console takes its width when it is made.
os.environ.pop("COLUMNS", None)

from benchmarks import BACKEND, MINI, MINI_EXIT, make_benchmark  # noqa: E402
from helpers import VOTES, audio_answer, boxes_answer, write_script  # noqa: E402

from gar_agent.cli.app import main  # noqa: E402
from gar_agent.demo import make_example  # noqa: E402
from gar_agent.media import load_media  # noqa: E402
from gar_agent.trace.store import list_traces  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The demo's generated duet: (image, audio, script)."""
    return make_example(tmp_path_factory.mktemp("example"))


@pytest.fixture(scope="session")
def media(example):
    """The example decoded once."""
    return load_media(example[0], example[1])


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random-weight Qwen2.5-Omni thinker checkpoint (seed 0), written once per session.

    One directory for every test module, so its weights load once per process (ChatQwenOmni shares
    loaded weights by path and settings); tests that need a changed checkpoint copy it first.
    """
    from gar_agent.models.tiny import build_tiny_checkpoint  # torch and transformers only when asked for

    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture()
def recorded(example, tmp_path, capsys):
    """A single-source run saved as a trace: (trace dir, run id, result, script)."""
    image, audio, _ = example
    script = write_script(
        tmp_path / "script.json",
        audio=[audio_answer(["violin"], [0.8])],
        generate=[boxes_answer([[38, 70, 128, 215]])],
        analyze=VOTES,
        refine=[json.dumps({"bbox": [30, 60, 120, 210], "changed": True})],
    )
    traces = tmp_path / "traces"
    code = main(
        [
            "run",
            str(image),
            str(audio),
            "--backend",
            f"scripted:{script}",
            "--trace-dir",
            str(traces),
            "--out",
            str(tmp_path / "o"),
            "--json",
            "--n-votes",
            "5",
            "--tau-av",
            "0.4",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["sources"][0]["refined"] is False
    [(path, trace)] = list_traces(traces)
    return traces, trace.run_id, result, script


@pytest.fixture(params=["memory", "sqlite"])
def checkpointer(request, tmp_path) -> str:
    """Each checkpoint store a replay or a fork must work against, as LangGraph's own tests do.

    The value is the store as `--checkpoints` (and `gar.replay(checkpoints=...)`) spell it: an in-memory
    saver, or a SQLite file of this test's own (what `gar replay` uses by default, under --trace-dir).
    """
    return "memory" if request.param == "memory" else f"sqlite:{tmp_path / 'checkpoints.sqlite'}"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """The vggss-single mini benchmark and one uninterrupted run of it: (data args, out, metrics)."""
    root = tmp_path_factory.mktemp("mini")
    frames, audio, gt = make_benchmark(root, "vggss-single", MINI)
    args = ["--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt, "--backend", BACKEND]
    out = root / "out"
    code = main([str(a) for a in ["eval", *args, "--out", out]])
    assert code == MINI_EXIT
    return args, out, json.loads((out / "metrics.json").read_text())

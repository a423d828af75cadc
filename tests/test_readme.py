"""The README's commands run as written: its "Try it" block, executed by bash in a fresh folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _try_it_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"### Try it \(.*?\n```bash\n(.*?)```", text, re.S)
    assert match, "README.md has no 'Try it' bash block"
    return match.group(1)


@pytest.mark.slow
def test_the_readme_try_it_block_runs_as_written(tmp_path):
    block = _try_it_block()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "120"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    # the demo's trace is in out/traces; the replays, the fork and the tiny run saved theirs in ./traces
    docs = [
        json.loads(p.read_text()) for p in (*out.glob("traces/*/trace.json"), *tmp_path.glob("traces/*/trace.json"))
    ]
    assert len(docs) == 5
    parents = [d["parent"] for d in docs if d["parent"]]
    assert len(parents) == 3 and len(set(parents)) == 1
    assert json.loads((out / "fork" / "result.json").read_text())["sources"][0]["initial_box"] == [20, 30, 150, 200]
    assert json.loads((out / "replay3" / "result.json").read_text())["sources"][0]["analysis"]["n_votes"] == 3
    assert (out / "demo.html").stat().st_size > 10_000
    tiny = json.loads((out / "tiny" / "result.json").read_text())
    assert tiny["error"].startswith("generate:")
    assert "Loading weights" not in proc.stdout + proc.stderr  # no progress bar through the step view


def _python_api_block() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Python API \(notebooks\).*?\n```python\n(.*?)```", text, re.S)
    assert match, "README.md has no 'Python API' python block"
    return match.group(1)


def test_the_readme_python_api_block_runs_as_written(tmp_path):
    from benchmarks import ENTRIES, make_benchmark

    from gar_agent.cli.app import main

    frames, audio, gt = make_benchmark(tmp_path / "data", "vggss-single", ENTRIES)
    args = ["eval", "run", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    assert main([str(a) for a in [*args, "--backend", "test_eval_replay:VaryModel", "--out", tmp_path / "eval"]]) == 0
    proc = subprocess.run(
        [sys.executable, "-c", _python_api_block()], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("[[38, 70, 128, 215], [190, 80, 318, 205]]") and "calls" in lines[0]
    assert "'av_consistency'" in lines[1]
    assert "calls reused," in lines[2] and not lines[2].endswith(" 0 new")
    assert lines[3].startswith("1.0 8 refined")  # cIoU@0.5, samples, the first sample's gate
    assert any(line.startswith("refined") for line in lines) and any(line.startswith("skipped") for line in lines)
    assert len(list((tmp_path / "traces").glob("*/trace.json"))) == 4


def test_the_readme_tiny_benchmark_block_runs_as_written(tmp_path):
    """`gar data example` + `gar eval run` with its scripted answers + `gar view --export` + `gar eval replay`
    under no_gate + `gar eval compare`, as the README says."""
    text = (ROOT / "README.md").read_text()
    match = re.search(r"### Try it on a tiny benchmark .*?\n```bash\n(.*?)```", text, re.S)
    assert match, "README.md has no 'Try it on a tiny benchmark' bash block"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "120"}
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", match.group(1)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ex" / "eval" / "metrics.json").read_text())
    assert metrics["dataset"] == "music-duet" and metrics["n_evaluated"] == 6 and metrics["n_failed"] == 0
    assert metrics["refined"] == 4  # samples 2 and 5, both sources each
    html = (tmp_path / "ex" / "ex002.html").read_text()
    assert "ex002" in html and "refine" in html
    # the replay under no_gate: only the Refine calls of the 4 gate-skipped samples are new, none fails
    replay = json.loads((tmp_path / "ex" / "nogate" / "replay.json").read_text())
    assert (replay["reused"], replay["new"]) == (28, 8)
    assert json.loads((tmp_path / "ex" / "nogate" / "metrics.json").read_text())["n_failed"] == 0
    assert "McNemar on cIoU@0.5 hits" in proc.stdout

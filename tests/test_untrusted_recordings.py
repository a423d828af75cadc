"""A saved run or an evaluation folder is data from someone else: reading or re-running it never runs code.

Each test plants a graph file beside a recording (a trace, an eval folder) that writes a marker when
imported, and points the recording at it (path, path-like name, and a sha256 that matches the file,
as an attacker would write it). Replay, fork and the gate sweep must stop with one line naming the
recorded graph and how to run it, and the marker must never appear.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from benchmarks import gar_eval
from helpers import cli, replay_cli

from gar_agent.paths import GRAPHS_DIR
from gar_agent.trace.store import resolve_trace


def plant(folder: Path) -> tuple[Path, Path, str]:
    """A graph file in `folder` that writes `folder/marker` when imported: (file, marker, its sha256)."""
    marker = folder / "marker"
    evil = folder / "evil.py"
    evil.write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from gar_agent.topology import load_topology\n\n\n"
        "def build():\n    return load_topology('gar').builder\n"
    )
    return evil, marker, hashlib.sha256(evil.read_bytes()).hexdigest()


def point_trace_at(trace_file: Path, evil: Path, sha: str) -> None:
    """Rewrite a stored trace so its graph is the planted file (as a hostile trace would say)."""
    doc = json.loads(trace_file.read_text())
    doc["graph"].update(name=f"./{evil.name}", path=str(evil), sha256=sha)
    trace_file.write_text(json.dumps(doc))


def one_line_refusal(code: int, err: str, sha: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gar: error: "), err
    assert "'./evil.py'" in lines[0] and sha[:16] in lines[0]  # which graph the recording used
    assert "--graph FILE" in lines[0] and "--graph-source" in lines[0]  # how to run it, how to see it


def test_replay_and_fork_never_import_the_graph_a_trace_names(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, _, _ = recorded
    trace_file = resolve_trace(run_id, traces)
    evil, marker, sha = plant(trace_file.parent)
    point_trace_at(trace_file, evil, sha)
    code, _, err = cli(
        capsys, "replay", run_id, "--checkpoints", checkpointer, "--trace-dir", traces, "--out", tmp_path / "r"
    )
    one_line_refusal(code, err, sha)
    code, _, err = cli(
        capsys,
        "fork",
        run_id,
        "--checkpoints",
        checkpointer,
        "--box",
        "0=1,2,30,40",
        "--trace-dir",
        traces,
        "--out",
        tmp_path / "f",
    )
    one_line_refusal(code, err, sha)
    assert not marker.exists()
    # the user may run it by naming it: then it is their file, and it runs
    code, _, err = cli(
        capsys,
        "replay",
        run_id,
        "--checkpoints",
        checkpointer,
        "--graph",
        evil,
        "--trace-dir",
        traces,
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert code == 0, err
    assert marker.read_text() == "ran"


def test_replay_runs_the_shipped_graph_with_the_recorded_hash(recorded, capsys, tmp_path, checkpointer):
    """A trace whose path leads nowhere (another machine) still replays: the hash picks the shipped file."""
    traces, run_id, result, _ = recorded
    trace_file = resolve_trace(run_id, traces)
    doc = json.loads(trace_file.read_text())
    assert doc["graph"]["sha256"] == hashlib.sha256((GRAPHS_DIR / "gar.py").read_bytes()).hexdigest()
    doc["graph"]["path"] = "/elsewhere/graphs/gar.py"
    trace_file.write_text(json.dumps(doc))
    code, out, err = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--out",
        tmp_path / "r",
        "--json",
    )
    assert code == 0, err
    assert json.loads(out)["sources"] == result["sources"]


def test_gate_sweep_never_imports_the_graph_an_eval_folder_names(mini, capsys, tmp_path):
    _, out, _ = mini
    folder = tmp_path / "shared-eval"
    shutil.copytree(out, folder)
    evil, marker, sha = plant(folder)
    for trace_file in (folder / "traces").glob("*/trace.json"):
        point_trace_at(trace_file, evil, sha)
    config = json.loads((folder / "eval.json").read_text())
    config["settings"].update(graph_file=str(evil), graph_sha256=sha, graph="./evil.py")
    (folder / "eval.json").write_text(json.dumps(config))
    code, _, err = gar_eval(capsys, "sweep", folder, "--tau-av", "0.3,0.5")
    one_line_refusal(code, err, sha)
    assert not marker.exists() and not (folder / "sweep.json").exists()


def test_a_trace_of_an_older_shipped_graph_says_how_to_run_todays(recorded, capsys, tmp_path):
    """Any edit of graphs/gar.py (a type annotation will do) changes its sha256, so every trace recorded
    before it stops replaying by default: the line names `--graph gar` (today's file) and its diff."""
    traces, run_id, result, _ = recorded
    trace_file = resolve_trace(run_id, traces)
    doc = json.loads(trace_file.read_text())
    doc["graph"]["sha256"] = "0" * 64  # gar.py as an older release shipped it
    trace_file.write_text(json.dumps(doc))
    code, _, err = cli(capsys, "replay", run_id, "--trace-dir", traces, "--out", tmp_path / "r")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the shipped graph 'gar' has changed since" in err
    assert f"`gar trace show {trace_file} --graph-source --graph gar` shows how" in err
    assert "--graph gar runs today's" in err
    code, out, err = cli(capsys, "replay", run_id, "--graph", "gar", "--trace-dir", traces, "--out", tmp_path / "r")
    assert code == 0, err

"""The package as a user installs it: a wheel (not editable) that carries the prompts and graphs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stderr[-2000:]}")
    assert "warning" not in proc.stderr.lower(), proc.stderr  # setuptools prints nothing to worry a user
    (path,) = out.glob("gar_agent-*.whl")
    return path


def test_wheel_carries_prompts_and_graphs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_prompts = {p.name for p in (ROOT / "gar_agent" / "templates").glob("*.txt")}
    shipped_graphs = {p.name for p in (ROOT / "gar_agent" / "graphs").glob("*.py")}
    assert {"system.txt", "analyze_single.txt", "repair.txt"} <= shipped_prompts
    assert {"gar.py", "adaptive.py", "no_gate.py"} <= shipped_graphs
    assert {f"gar_agent/templates/{n}" for n in shipped_prompts} <= names
    assert {f"gar_agent/graphs/{n}" for n in shipped_graphs} <= names


def test_installed_wheel_runs_the_demo_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)], check=True
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    env.pop("GAR_PROMPTS", None)
    env.pop("GAR_GRAPHS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gar_agent", "demo", "--json", "--out", "demo", "--trace-dir", "traces"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # it ran from the installed copy, with the installed prompts
    where = subprocess.run(
        [sys.executable, "-c", "import gar_agent.paths as p; print(p.PROMPTS_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert where.startswith(str(target))
    assert '"sources"' in proc.stdout

"""The packages' import layers ([tool.importlinter] in pyproject.toml): kept today, and broken by an upward import.

`.ci/run` runs `lint-imports` itself; these tests also make the contract part of the suite, and show
it is not vacuous: a copy of the package with one upward import added fails it, naming that import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under `root` (its own copy first on the path), without the cache."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"
    return subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_contracts_are_kept():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "broken" in done.stdout and " 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("protocols/common.py", "gar_agent.nodes.gate"),  # a protocol reaching up into the nodes
        ("trace/diff.py", "gar_agent.eval.metrics"),  # the trace package reaching up into eval
        ("view/page.py", "gar_agent.cli.common"),  # the viewer reaching up into the CLI
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    shutil.copytree(ROOT / "gar_agent", tmp_path / "gar_agent", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "gar_agent" / module, "a") as f:
        f.write(f"\nimport {upward}  # noqa: E402,F401\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    importer = "gar_agent." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {upward}" in done.stdout, done.stdout

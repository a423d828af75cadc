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


def copy_with(tmp_path: Path, module: str, text: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package where `module` (a path under gar_agent/) ends with `text`."""
    shutil.copytree(ROOT / "gar_agent", tmp_path / "gar_agent", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "gar_agent" / module, "a") as f:
        f.write(text)
    return lint(tmp_path)


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("protocols/common.py", "gar_agent.nodes.gate"),  # a protocol reaching up into the nodes
        ("trace/schema.py", "gar_agent.eval.metrics"),  # the trace package reaching up into eval
        ("trace/store.py", "gar_agent.rerun.replay"),  # ... or into replay
        ("view/page.py", "gar_agent.cli.common"),  # the viewer reaching up into the CLI
        ("run.py", "gar_agent.rerun.replay"),  # the run path reaching up into replay
        ("graphs/gar.py", "gar_agent.run"),  # a shipped graph file reaching up into the run path
        ("rules.py", "gar_agent.models.scripted"),  # a pure rule reaching for a model
        ("state.py", "gar_agent"),  # the package root (it loads the notebook API, hence everything)
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    done = copy_with(tmp_path, module, f"\nimport {upward}  # noqa: E402,F401\n")
    assert done.returncode != 0
    importer = "gar_agent." + module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {upward}" in done.stdout, done.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(tmp_path):
    # trace.store imports trace.schema; the way back closes a cycle inside one layer
    done = copy_with(tmp_path, "trace/schema.py", "\nimport gar_agent.trace.store  # noqa: E402,F401\n")
    assert done.returncode != 0
    assert "No cycles are allowed in gar_agent.trace." in done.stdout, done.stdout


def test_a_new_module_must_be_placed_in_a_layer(tmp_path):
    copy_with(tmp_path, "errors.py", "")  # an unchanged copy
    (tmp_path / "gar_agent" / "newcomer.py").write_text('"""A module nobody placed."""\n')
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "gar_agent.newcomer" in done.stdout, done.stdout


def test_no_module_shadows_a_notebook_api_name():
    # `import gar_agent.X` sets gar_agent.X to the module, so a package named like an API function
    # (gar.replay) would replace that function as soon as anything imported the package
    import gar_agent

    for name in gar_agent._API:
        assert not (ROOT / "gar_agent" / name).exists() and not (ROOT / "gar_agent" / f"{name}.py").exists(), name

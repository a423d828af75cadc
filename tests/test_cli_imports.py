"""`gar` starts fast: its import and `gar --help` load no model stack, and lazy commands are what they say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sklearn", "scipy", "langgraph", "langchain_core", "cv2")


def _loaded_after(code: str) -> set[str]:
    """The heavy top-level packages a fresh interpreter holds after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(proc.stdout.strip().splitlines()[-1])) & set(HEAVY)


def test_importing_the_cli_loads_no_model_stack():
    assert _loaded_after("import gar_agent.cli.app") == set()


def test_gar_help_and_trace_list_load_no_model_stack(tmp_path):
    run = "from gar_agent.cli.app import main\nimport contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):"
    assert _loaded_after(f"{run}\n    main(['--help'])") == set()
    (tmp_path / "traces").mkdir()
    assert _loaded_after(f"{run}\n    main(['trace', 'list', {str(tmp_path / 'traces')!r}])") == set()


@pytest.mark.parametrize(
    "name", ["track", "replay", "fork", "view", "model", "data", "trace", "graph", "prompts", "eval"]
)
def test_a_lazy_command_loads_and_gar_help_says_what_it_says(name):
    from gar_agent.cli.lazy import LAZY, load

    command = load(name)
    assert command.name == name
    assert (command.help or "").split("\n\n")[0].strip() == LAZY[name].help


def test_gar_help_lists_every_command_and_run_help_names_every_registered_backend():
    help_text = subprocess.run(
        [sys.executable, "-m", "gar_agent", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in ("run", "demo", "track", "replay", "fork", "view", "trace", "eval", "data"):
        assert f"\n  {name} " in help_text
    run_help = subprocess.run(
        [sys.executable, "-m", "gar_agent", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "300", "PATH": ""},
    ).stdout
    assert "qwen-omni | openai | scripted:FILE | module:attr" in " ".join(run_help.split())


def test_gar_eval_compare_loads_no_model_or_scientific_stack(tmp_path):
    """The comparison needs numpy only: scipy, sklearn and LangGraph were seconds of its start-up."""
    from gar_agent.eval.metrics import SampleScore
    from gar_agent.eval.store import sample_document

    for name, shift in (("a", 0.0), ("b", 0.1)):
        (tmp_path / name / "samples").mkdir(parents=True)
        (tmp_path / name / "eval.json").write_text(json.dumps({"format": 1, "dataset": "vggss-single", "settings": {}}))
        for i in range(4):
            score = SampleScore(
                id=f"s{i}", pred_boxes=[[0.1 + shift * i, 0.1, 0.5, 0.5]], gt_boxes=[[0.1, 0.1, 0.5, 0.5]],
                image_size=[224, 224],
            )  # fmt: skip
            doc = sample_document(score, None, 0.0, None, None)
            (tmp_path / name / "samples" / f"s{i}.json").write_text(json.dumps(doc))
    out = tmp_path / "report.json"
    run = (
        "from gar_agent.cli.app import main\nimport contextlib\n"
        f"with open({str(out)!r}, 'w') as fh, contextlib.redirect_stdout(fh):\n"
        f"    main(['eval', 'compare', {str(tmp_path / 'a')!r}, {str(tmp_path / 'b')!r}, '--json', '--resamples', '200'])"
    )
    assert _loaded_after(run) == set()
    report = json.loads(out.read_text())  # it did compare: B's boxes drift from the GT, A's are the GT
    assert report["comparisons"][0]["n_paired"] == 4
    assert report["comparisons"][0]["summary"]["down"] == 3

"""gar_agent.eval.run: a benchmark run without the terminal (what `gar eval run` calls down to).

The command only parses options; building the job, claiming the folder, running, resuming and
writing the metrics happen here, so a notebook or script gets the same run with its own hooks.
"""

from __future__ import annotations

import contextlib
import json

import pytest

from gar_agent.data.example import write_example
from gar_agent.eval.run import EvalError, EvalHooks, EvalRequest, run_benchmark


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    return write_example(tmp_path_factory.mktemp("bench"), "vggss-single", samples=3)


def request(example, out, **changes) -> EvalRequest:
    fields = dict(
        dataset="vggss-single", frames=example.frames, audio=example.audio, gt=example.gt, out=out,
        backend=f"scripted:{example.answers}", vis=False,
    )  # fmt: skip
    return EvalRequest(**{**fields, **changes})


def test_a_run_without_the_cli_writes_the_folder_and_a_resume_runs_nothing_again(example, tmp_path):
    seen: dict = {"started": [], "done": []}

    @contextlib.contextmanager
    def running(total, done):
        seen["total"] = total
        yield lambda doc: seen["done"].append(doc["id"])

    hooks = EvalHooks(started=lambda plan, n, resumed: seen["started"].append((n, resumed)), running=running)
    first = run_benchmark(request(example, tmp_path / "o"), hooks)
    assert seen["started"] == [(0, False)] and seen["total"] == 3 and sorted(seen["done"]) == example.ids
    on_disk = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert on_disk["n_evaluated"] == first.metrics["n_evaluated"] == 3
    assert first.metrics["ciou@0.5"] == 1.0  # the example's scripted answers end on (or are refined to) the GT
    assert sorted(p.stem for p in (tmp_path / "o" / "samples").iterdir()) == example.ids

    again = run_benchmark(request(example, tmp_path / "o"), hooks)
    assert seen["started"][-1] == (3, True) and len(seen["done"]) == 3  # nothing ran twice
    assert again.metrics["n_evaluated"] == 3


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": None}, "a run needs --dataset"),
        ({"dataset": "nope"}, "nope"),
        ({"gt_boxes": "both"}, "--gt-boxes 'both': use first or union"),
        ({"ids": ["not-an-id"]}, "nothing to evaluate"),
    ],
)
def test_a_request_that_cannot_run_is_one_eval_error_and_claims_no_folder(example, tmp_path, changes, message):
    with pytest.raises(EvalError, match=message):
        run_benchmark(request(example, tmp_path / "o", **changes))
    assert not (tmp_path / "o" / "eval.json").exists()


def test_the_model_is_made_from_the_backend_name_and_model_given(example, tmp_path):
    """settings.backend reads "NAME --model M" (for people); the model is made from NAME and M."""
    from gar_agent.models.backends import resolve_backend

    asked = []

    def resolve(backend, model, **options):
        asked.append((backend, model, options))
        return resolve_backend(backend, None)

    req = request(example, tmp_path / "o", model="m1", model_options=lambda name: {"seen": name})
    done = run_benchmark(req, resolve=resolve)
    backend = f"scripted:{example.answers}"
    assert asked == [(backend, "m1", {"seen": backend})] and done.metrics["n_evaluated"] == 3
    assert done.plan.settings.backend.startswith(backend) and "m1" in done.plan.settings.backend

"""The notebook API (gar_agent.api, re-exported from gar_agent): runs, traces, evaluations, replays."""

from __future__ import annotations

import sys

import pytest

import gar_agent as gar
from gar_agent.checkpoints import open_checkpointer
from gar_agent.errors import UserError
from gar_agent.state import Vote
from gar_agent.trace.schema import TraceCall, TraceStep


@pytest.fixture(scope="module")
def run(example, tmp_path_factory):
    image, audio, script = example
    return gar.run_clip(
        image, audio, backend=f"scripted:{script}", sources=2, trace_dir=tmp_path_factory.mktemp("traces")
    )


def test_a_clip_run_from_python_is_a_typed_saved_run(run, example):
    assert [s.box for s in run.result.sources] == [[38, 70, 128, 215], [190, 80, 318, 205]]
    assert all(isinstance(s, TraceStep) for s in run.steps) and run.steps[0].node == "generate"
    assert all(isinstance(c, TraceCall) for c in run.calls)
    assert [c.stage for c in run.calls[:2]] == ["audio", "generate"]
    # every vote of each source, in index order, as the typed records hold them
    by_source = {}
    for v in run.votes:
        by_source.setdefault(v["source"], []).append(v)
    assert sorted(by_source) == [0, 1]
    assert all(set(v) == {"source", "index", "av_consistency", "keep", "role_tags", "error", "raw"} for v in run.votes)
    n = run.trace.settings.n_votes
    assert [len(vs) for vs in by_source.values()] == [n, n]
    raw = run.trace.final_state.sources[0].votes
    assert [v["av_consistency"] for v in by_source[0]] == [x.parsed.av_consistency if x.parsed else None for x in raw]
    assert isinstance(raw[0], Vote)
    again = gar.load_trace(run.path)
    assert again.run_id == run.run_id and again.result == run.result


def test_a_replay_from_python_reuses_the_recording(run, example, tmp_path, checkpointer):
    same = gar.replay(run, trace_dir=tmp_path, checkpoints=checkpointer)
    assert same.new == 0 and same.reused == len(run.calls) and same.missing == []
    assert [s.box for s in same.result.sources] == [s.box for s in run.result.sources]
    if checkpointer.startswith("sqlite:"):  # the store given is the one written
        assert len(list(open_checkpointer(checkpointer, tmp_path).list(None))) >= 3
    fewer = gar.replay(
        run, n_votes=3, trace_dir=tmp_path, checkpoints=checkpointer
    )  # the aggregate Refine is told changes: not recorded
    assert fewer.missing and "refine call" in fewer.missing[0]
    answered = gar.replay(
        run, n_votes=3, backend=f"scripted:{example[2]}", trace_dir=tmp_path, checkpoints=checkpointer
    )
    assert answered.missing == [] and answered.new >= 1 and answered.trace_path.is_file()


def test_an_evaluation_as_records_and_a_dataframe(tmp_path, monkeypatch):
    from benchmarks import ENTRIES, make_benchmark

    from gar_agent.cli.app import main

    frames, audio, gt = make_benchmark(tmp_path, "vggss-single", ENTRIES[:3] + ENTRIES[-1:])
    out = tmp_path / "eval"
    args = ["eval", "run", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    assert main([str(a) for a in [*args, "--backend", "test_eval_replay:VaryModel", "--out", out]]) == 0
    ev = gar.load_eval(out)
    assert [s["id"] for s in ev.samples] == ["s0", "s1", "s2", "zblack"]
    assert ev.metrics["n_total"] == 4 and ev.config["dataset"] == "vggss-single"
    s0, black = ev.samples[0], ev.samples[-1]
    assert s0["gate"] == "refined" and s0["failed"] is False and 0 < s0["ciou"] <= 1 and s0["classes"] == "a"
    assert black["gate"] == "failed" and black["ciou"] is None and "nothing bright" in black["error"]
    assert ev.trace("s0").result.sources[0].refined
    df = ev.dataframe()
    assert list(df.index) == ["s0", "s1", "s2", "zblack"] and df.loc["s1", "gate"] == "refined"
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(UserError, match="pip install pandas"):
        ev.dataframe()
    with pytest.raises(UserError, match="not an evaluation folder"):
        gar.load_eval(tmp_path / "nothing")


def test_a_recording_naming_a_graph_file_never_runs_it(run, tmp_path):
    forged = run.trace.model_copy(
        update={"graph": run.trace.graph.model_copy(update={"sha256": "0" * 64, "path": str(tmp_path / "x.py")})}
    )
    with pytest.raises(UserError, match="a recording never runs a file it names"):
        gar.replay(gar.Run(forged, run.path), trace_dir=tmp_path)


def test_a_clip_runs_again_from_a_recorded_spec(run, example, tmp_path):
    image, audio, script = example
    assert run.trace.spec is not None and run.trace.spec.backend.name == f"scripted:{script}"
    again = gar.run_clip(image, audio, spec=run, trace_dir=tmp_path)
    assert again.result.sources == run.result.sources
    assert again.trace.settings == run.trace.settings and again.trace.graph.sha256 == run.trace.graph.sha256
    # the recorded prompt folder gone: the spec's own template texts are used
    gone = run.trace.spec.model_copy(
        update={"prompts": run.trace.spec.prompts.model_copy(update={"path": str(tmp_path / "x")})}
    )
    third = gar.run_clip(image, audio, spec=gone, trace_dir=tmp_path)
    assert third.result.sources == run.result.sources and third.trace.prompts == run.trace.prompts


def test_the_lazy_api_shows_in_dir_for_a_notebooks_completion():
    """`gar.<Tab>` in a notebook lists dir(gar): the lazily imported API must be in it."""
    import gar_agent

    assert {"load_trace", "load_eval", "replay", "run_clip", "Run", "Evaluation", "Replay"} <= set(dir(gar_agent))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"tau_avv": 0.9}, "unknown setting 'tau_avv': give one of sources, n_votes"),
        ({"n_votes": "many"}, "setting n_votes='many'"),
        ({"tau_av": 1.5}, "setting tau_av=1.5: Input should be less than or equal to 1"),
    ],
)
def test_a_replay_refuses_a_setting_it_would_not_apply(run, tmp_path, override, message):
    # model_copy(update=...) took these in silence: a misspelt name was dropped, a bad value kept
    with pytest.raises(UserError, match=message):
        gar.replay(run, trace_dir=tmp_path, **override)
    assert not list(tmp_path.iterdir())  # nothing ran

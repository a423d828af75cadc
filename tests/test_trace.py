"""Traces: saved by every run, read back, listed, shown, diffed, replayed and forked."""

import json
import math
import stat

import pytest
from helpers import VOTES, audio_answer, boxes_answer, cli, replay_cli, scripted

from gar_agent.checkpoints import open_checkpointer
from gar_agent.cli.app import main
from gar_agent.prompts import PromptSet
from gar_agent.runner import run_clip
from gar_agent.state import RunState, Settings
from gar_agent.topology import load_topology
from gar_agent.trace.schema import SCHEMA_VERSION
from gar_agent.trace.store import TraceError, list_traces, read_trace


def test_a_run_writes_a_complete_trace(recorded):
    traces, run_id, result, _ = recorded
    trace = read_trace(run_id, traces)
    assert trace.schema_version == SCHEMA_VERSION and trace.result.model_dump(mode="json") == result
    assert trace.graph.name == "gar" and len(trace.graph.sha256) == 64
    assert {"generate", "localize:analyze", "localize:gate"} <= set(trace.graph.nodes)
    assert set(trace.prompts) >= {"analyze_single.txt", "refine_single.txt"}
    assert trace.inputs["image"].width == 330 and trace.inputs["audio"].size > 0
    assert [(s.node, s.source) for s in trace.steps] == [("generate", None), ("analyze", 0), ("gate", 0)]
    gen, ana = trace.steps[0], trace.steps[1]
    assert [c.stage for c in gen.calls] == ["audio", "generate"]
    assert gen.calls[0].media_refs == {"audio": trace.media["audio"].sha256}  # by hash, not inlined
    assert "base64" not in json.dumps(trace.model_dump(mode="json"))
    assert ana.calls[0].n == 5 and ana.calls[0].temperature == 0.4 and ana.calls[0].answers == VOTES
    assert ana.update.kind == "source" and ana.update.source.votes[3].error == "no JSON object found in the answer"
    assert ana.usage.model_calls == 1


def test_replay_with_nothing_changed_gives_the_same_result(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, result, _ = recorded
    code, out, _ = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--json",
        "--out",
        tmp_path / "r",
    )
    assert code == 0 and json.loads(out) == result
    new = [t for _, t in list_traces(traces) if t.parent == run_id]
    assert len(new) == 1 and new[0].result.model_dump(mode="json") == result
    if checkpointer.startswith("sqlite:"):  # the replay's super-steps went to the store it was given
        assert len(list(open_checkpointer(checkpointer, traces).list(None))) >= 3


def test_replay_with_fewer_votes_uses_the_first_ones(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, _, _ = recorded
    code, out, _ = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--json",
        "--n-votes",
        "2",
        "--out",
        tmp_path,
    )
    analysis = json.loads(out)["sources"][0]["analysis"]
    assert code == 0 and analysis["n_votes"] == 2 and analysis["av_consistency"] == pytest.approx(0.8)


def test_a_looser_gate_replays_without_the_model(example, recorded, capsys, tmp_path, checkpointer):
    traces, _, _, script = recorded
    image, audio, _ = example
    # recorded with a strict tau_audio (audio confidence 0.8 < 0.9): the source was refined
    code, out, _ = cli(capsys, "run", image, audio, "--backend", f"scripted:{script}", "--trace-dir", traces,
                       "--json", "--tau-av", "0.4", "--tau-audio", "0.9", "--out", tmp_path / "strict")  # fmt: skip
    strict = json.loads(out)["sources"][0]
    assert code == 0 and strict["refined"] is True and strict["status"] == "refined"
    run_id = max(list_traces(traces), key=lambda item: item[1].created)[1].run_id
    # replayed with a looser tau_audio the gate skips Refine: no call is missing, no model is needed
    code, out, err = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--json",
        "--tau-audio",
        "0.5",
        "--out",
        tmp_path / "loose",
    )
    loose = json.loads(out)["sources"][0]
    assert code == 0, err
    assert loose["refined"] is False and loose["status"] == "skipped" and loose["gate"]["reasons"] == []
    assert loose["box"] == strict["initial_box"] != strict["box"]


def test_a_stricter_gate_needs_a_call_the_recording_lacks(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, _, script = recorded
    code, out, err = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--tau-av",
        "0.9",
        "--out",
        tmp_path,
    )
    assert code == 3
    assert "replay needs a call the recording lacks: refine call for source 0 (refine_single.txt, n=1)" in err
    assert len(err.strip().splitlines()) == 1
    # with a backend, the missing call goes to it and the source is refined
    code, out, _ = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--tau-av",
        "0.9",
        "--json",
        "--backend",
        f"scripted:{script}",
        "--out",
        tmp_path,
    )
    src = json.loads(out)["sources"][0]
    assert code == 0 and src["refined"] is True and src["box"] == [30, 60, 120, 210]


def test_replay_with_an_edited_prompt_is_a_missing_call(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, _, _ = recorded
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for p in PromptSet().directory.glob("*.txt"):
        (prompts / p.name).write_text(p.read_text())
    (prompts / "analyze_single.txt").write_text((prompts / "analyze_single.txt").read_text() + "\nBe strict.\n")
    code, _, err = replay_cli(
        capsys,
        run_id,
        traces,
        checkpointer,
        "--prompts",
        prompts,
        "--out",
        tmp_path,
    )
    assert code == 3 and "analyze call for source 0 (analyze_single.txt, n=5)" in err


def test_fork_with_an_edited_box(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, _, script = recorded
    code, out, err = cli(
        capsys,
        "fork",
        run_id,
        "--checkpoints",
        checkpointer,
        "--box",
        "0=20,30,90,120",
        "--trace-dir",
        traces,
        "--json",
        "--backend",
        f"scripted:{script}",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    src = json.loads(out)["sources"][0]
    assert src["initial_box"] == [20, 30, 90, 120] and src["box"] == [20, 30, 90, 120]
    if checkpointer.startswith("sqlite:"):  # the paused run, its edit and the rest: all in the store given
        assert len(list(open_checkpointer(checkpointer, traces).list(None))) >= 3
    forked = [t for _, t in list_traces(traces) if t.fork]
    assert forked[0].parent == run_id and forked[0].fork.edits == ["source 0 initial box -> [20, 30, 90, 120]"]
    assert [s.node for s in forked[0].steps][:2] == ["generate", "analyze"]
    # without a backend the changed prompt (it states the box) is a missing call
    code, _, err = cli(
        capsys,
        "fork",
        run_id,
        "--checkpoints",
        checkpointer,
        "--box",
        "0=20,30,90,120",
        "--trace-dir",
        traces,
        "--out",
        tmp_path,
    )
    assert code == 3 and "analyze call for source 0" in err


def test_fork_with_an_edited_vote_changes_the_gate(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, result, script = recorded
    assert result["sources"][0]["analysis"]["keep"] is True
    bad = json.dumps({"av_consistency": 0.0, "keep": False})
    code, out, err = cli(
        capsys,
        "fork",
        run_id,
        "--checkpoints",
        checkpointer,
        "--vote",
        f"0:0={bad}",
        "--vote",
        f"0:1={bad}",
        "--trace-dir",
        traces,
        "--json",
        "--backend",
        f"scripted:{script}",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    src = json.loads(out)["sources"][0]
    assert src["analysis"]["keep"] is False and src["analysis"]["av_consistency"] == pytest.approx(0.2)
    assert src["refined"] is True


def test_bad_fork_edits(recorded, capsys, tmp_path, checkpointer):
    traces, run_id, _, _ = recorded
    for args, why in [
        (["--box", "0=1,2,3"], "write SOURCE=x1,y1,x2,y2"),
        (["--box", "4=1,2,3,4"], "the run has no source 4"),
        # the frame is 330x250: an inverted, empty or outside box would become the run's box as given
        (["--box", "0=300,2,3,4"], "--box 0=300,2,3,4: give x1 < x2 and y1 < y2 inside the 330x250 frame"),
        (["--box", "0=10,20,10,40"], "--box 0=10,20,10,40: give x1 < x2 and y1 < y2 inside the 330x250 frame"),
        (["--box", "0=-50,2,3000,4"], "--box 0=-50,2,3000,4: give x1 < x2 and y1 < y2 inside the 330x250 frame"),
        (["--vote", "0:9={}"], "has 5 recorded analyze answers; no answer #9"),
        ([], "needs at least one edit"),
    ]:
        code, _, err = cli(
            capsys, "fork", run_id, "--checkpoints", checkpointer, *args, "--trace-dir", traces, "--out", tmp_path
        )
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1, (args, err)


def test_corrupt_and_future_traces_are_clear_errors(recorded, capsys, tmp_path):
    traces, run_id, _, _ = recorded
    path = next(traces.glob("*/trace.json"))
    data = json.loads(path.read_text())
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**data, "schema_version": SCHEMA_VERSION + 1}))
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(path.read_text()[:500])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**data, "settings": {"sources": "many"}}))
    for f, why in [
        (future, "newer than this gar-agent reads"),
        (corrupt, "is corrupt (not JSON"),
        (wrong, "is corrupt at settings.sources"),
        (tmp_path / "none.json", "no trace"),
    ]:
        with pytest.raises(TraceError, match=why.replace("(", r"\(")):
            read_trace(f)
        code, _, err = cli(capsys, "trace", "show", f)
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1


def test_checkpoint_history_lists_every_super_step(media, tmp_path, checkpointer):
    saver = open_checkpointer(checkpointer, tmp_path)
    model = scripted(audio=[audio_answer(["violin"], [0.9])], generate=[boxes_answer([[5, 5, 50, 50]])], analyze=VOTES)
    topology = load_topology("gar")
    out = run_clip(media, Settings(), model, topology=topology, checkpointer=saver, thread_id="t1")
    graph = topology.compile(checkpointer=saver)
    history = list(graph.get_state_history({"configurable": {"thread_id": "t1"}}))
    assert len(history) >= 3  # input, after generate, after the branches joined
    latest = RunState.model_validate(history[0].values)
    assert latest == out.state
    after_generate = [h for h in history if "localize" in h.next]
    assert after_generate and RunState.model_validate(after_generate[0].values).sources[0].votes == []


def test_trace_list_show_diff(recorded, capsys, tmp_path):
    traces, run_id, _, _ = recorded
    cli(capsys, "replay", run_id, "--trace-dir", traces, "--tau-audio", "0.1", "--out", tmp_path)
    code, out, _ = cli(capsys, "trace", "list", traces)
    assert code == 0 and run_id[:12] in out and "(replay)" in out and "demo.png" in out
    code, out, _ = cli(capsys, "trace", "show", run_id, "--trace-dir", traces, "--png", tmp_path / "png")
    assert code == 0
    for piece in ("source 0", "dropped: no JSON object", "aggregate of 4/5", "gate · source 0", "skip refinement"):
        assert piece in out, piece
    assert len(list((tmp_path / "png").glob("step_*.png"))) == 3
    code, out, _ = cli(capsys, "trace", "show", run_id, "--trace-dir", traces, "--step", "1")
    assert code == 0 and "analyze · source 0" in out
    other = next(t.run_id for _, t in list_traces(traces) if t.parent == run_id)
    code, out, _ = cli(capsys, "trace", "diff", run_id, other, "--trace-dir", traces)
    assert code == 0 and "tau_audio" in out and "0.75" in out and "0.1" in out and "1.000" in out


def test_a_nan_or_infinity_in_a_run_is_written_as_null_and_reads_back(recorded, tmp_path):
    """JSON has no NaN: the writer puts null there, so every trace it writes can be read back."""
    from gar_agent.trace.schema import TraceStep
    from gar_agent.trace.steps import classify_update
    from gar_agent.trace.store import resolve_trace, write_trace

    traces, run_id, _, _ = recorded
    trace = read_trace(run_id, traces)
    analyze = trace.steps[1]
    analyze.update.source.analysis.av_consistency = float("nan")
    debug = classify_update({"debug": [float("-inf"), {"ratio": float("inf")}, 0.5]})  # a researcher's channel
    trace.steps.append(TraceStep(index=len(trace.steps), node="mine", update=debug))
    trace.wall_s = float("inf")
    path = write_trace(trace, tmp_path / "out")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    back = read_trace(resolve_trace(path))  # the reader refuses NaN/Infinity: this read is the point
    assert math.isnan(back.steps[1].update.source.analysis.av_consistency)  # typed: its null reads as NaN
    assert back.steps[-1].update.wrote["debug"] == [None, {"ratio": None}, 0.5]  # untyped: the null stays
    assert math.isnan(back.wall_s)  # a field typed as a number: its null reads as NaN (written as null again)
    assert '"wall_s":null' in write_trace(back, tmp_path / "again").read_text()


def test_saved_files_are_as_readable_as_result_json(example, tmp_path):
    image, audio, script = example
    code = main(["run", str(image), str(audio), "--sources", "2", "--backend", f"scripted:{script}",
                 "--out", str(tmp_path / "o"), "--trace-dir", str(tmp_path / "t"), "--json"])  # fmt: skip
    assert code == 0
    (trace,) = (tmp_path / "t").glob("*/trace.json")
    result = tmp_path / "o" / "result.json"
    assert stat.S_IMODE(trace.stat().st_mode) == stat.S_IMODE(result.stat().st_mode)


def test_trace_list_takes_the_flag_its_error_names(tmp_path, capsys):
    assert main(["trace", "list", "--trace-dir", str(tmp_path / "none")]) == 2
    assert "--trace-dir" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["trace", "list", "--trace-dir", str(tmp_path / "empty")]) == 0


def test_a_missing_input_is_told_apart_from_a_changed_one_and_a_relative_path_says_so(
    example, recorded, capsys, tmp_path, monkeypatch
):
    """A run made with relative input paths and replayed from another folder: the file is not
    missing, the command is run from elsewhere; the error says so instead of "missing or changed"."""
    _, _, _, script = recorded
    image, audio, _ = example
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    (work / "frame.png").write_bytes(image.read_bytes())
    (work / "clip.wav").write_bytes(audio.read_bytes())
    monkeypatch.chdir(work)
    traces = tmp_path / "t"
    code, _, _ = cli(capsys, "run", "frame.png", "clip.wav", "--backend", f"scripted:{script}", "--trace-dir", traces,
                     "--out", tmp_path / "o", "--json")  # fmt: skip
    assert code == 0
    run = next(p for p in traces.iterdir() if p.is_dir())
    monkeypatch.chdir(elsewhere)
    code, _, err = cli(capsys, "replay", run, "--out", tmp_path / "r")
    assert code == 2 and err.count("\n") == 1, err
    assert "image frame.png of run" in err and "is not found" in err
    assert "a relative path, read from the current folder" in err and "run from the folder the run was made in" in err
    monkeypatch.chdir(work)
    (work / "frame.png").write_bytes(image.read_bytes() + b"x")  # edited since
    code, _, err = cli(capsys, "replay", run, "--out", tmp_path / "r")
    assert code == 2 and "image frame.png of run" in err and "changed since it was recorded" in err
    assert "not found" not in err and "relative" not in err


def test_diff_of_two_runs_with_one_id_heads_its_columns_a_and_b(recorded, capsys, tmp_path):
    """The same sample in two evaluation folders has one run id (the sample id): the columns must still
    say which run is which."""
    traces, run_id, _, _ = recorded
    cli(capsys, "replay", run_id, "--trace-dir", traces, "--tau-audio", "0.1", "--out", tmp_path)
    other = next(p for p, t in list_traces(traces) if t.parent == run_id)
    twin = tmp_path / "other-eval" / "traces" / run_id / "trace.json"
    twin.parent.mkdir(parents=True)
    doc = json.loads(other.read_text())
    twin.write_text(json.dumps({**doc, "run_id": run_id}))
    code, out, _ = cli(capsys, "trace", "diff", run_id, twin, "--trace-dir", traces)
    head = next(line for line in out.splitlines() if "what" in line)
    assert code == 0 and f"A {run_id[:12]}" in head and f"B {run_id[:12]}" in head, out

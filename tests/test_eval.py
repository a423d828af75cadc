"""`gar eval`: metrics on tiny generated benchmarks, resume after a kill, rescore, gate sweep, workers.

The benchmarks and `RectModel`, which answers with exactly the rectangles a frame shows, are in
tests/benchmarks.py; the models below are RectModel changed for one test (`--backend test_eval:NAME`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import cv2
import pytest
from benchmarks import (
    BACKEND,
    DIE_AFTER,
    MINI_EXIT,
    RectModel,
    bright_boxes,
    data_args,
    gar_eval,
    make_benchmark,
    norm,
)
from helpers import cli
from langchain_core.outputs import ChatResult

TESTS = Path(__file__).resolve().parent


_lock = threading.Lock()


# --------------------------------------------------------------------------- metrics and files


def test_metrics_equal_hand_computed_values(mini):
    _, out, m = mini
    assert (m["n_total"], m["n_evaluated"], m["n_failed"]) == (4, 2, 2)
    assert m["ciou@0.3"] == 1.0 and m["ciou@0.5"] == 0.5
    # success rate 1 for t <= 0.3 (7 thresholds), 0.5 above: 6 * .05 + .75 * .05 + 13 * .5 * .05
    assert m["auc"] == pytest.approx(0.6625)
    assert m["ap"] == pytest.approx(0.75)
    # pooled: score 1 -> 25088 pos / 12544 neg, score 0 -> 12544 pos: 2/3 * 2/3 + 1/3 * 37632/100352
    assert m["piap"] == pytest.approx(41 / 72)
    assert (m["refined"], m["skipped"]) == (0, 2)  # av 0.6 >= 0.5, conf 0.9 >= 0.5, keep: skipped
    assert m["dataset"] == "vggss-single" and m["strict"] is False and m["gt_boxes"] == "first"
    assert m["settings"]["tau_av"] == 0.5 and m["settings"]["tau_audio"] == 0.5  # the dataset's defaults
    assert m["missing"] == ["d"] and m["n_missing"] == 1
    failed = {f["id"]: f["error"] for f in m["failed"]}
    assert failed["c"].startswith("generate: ") and "nothing bright in the frame" in failed["c"]
    assert failed["e"].startswith("media: image file") and "could not be decoded" in failed["e"]
    assert "matched_mean_iou" not in m


def test_per_sample_files(mini):
    _, out, _ = mini
    a = json.loads((out / "samples" / "a.json").read_text())
    b = json.loads((out / "samples" / "b.json").read_text())
    assert a["ciou"] == 1.0 and a["ap"] == 1.0 and b["ciou"] == pytest.approx(1 / 3) and b["ap"] == pytest.approx(0.5)
    assert a["result"]["sources"][0]["box"] == [56, 56, 167, 167] and a["result"]["error"] is None
    assert a["score"]["pred_boxes"] == [norm([56, 56, 167, 167])] and a["score"]["gt_boxes"] == [
        norm([56, 56, 167, 167])
    ]
    assert a["score"]["skipped"] == 1 and a["score"]["failed"] is False
    trace = json.loads((out / "traces" / "a" / "trace.json").read_text())
    assert trace["run_id"] == "a" and trace["result"] == a["result"]
    assert cv2.imread(str(out / "vis" / "a.jpg")).shape == (224, 224, 3)
    c = json.loads((out / "samples" / "c.json").read_text())
    assert c["score"]["failed"] is True and c["ciou"] is None and (out / "traces" / "c" / "trace.json").is_file()
    e = json.loads((out / "samples" / "e.json").read_text())
    assert e["result"] is None and e["trace"] is None and not (out / "traces" / "e").exists()
    assert not (out / "samples" / "d.json").exists()
    assert json.loads((out / "eval.json").read_text())["settings"]["n_votes"] == 5


def test_rescore_equals_the_run_and_strict_counts_failures_as_misses(mini, capsys, tmp_path):
    args, out, m = mini
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    code, stdout, _ = gar_eval(capsys, "--rescore", folder)
    assert code == 0 and json.loads((folder / "metrics.json").read_text()) == m
    assert "cIoU@0.5" in stdout and "50.0" in stdout
    code, _, _ = gar_eval(capsys, "--rescore", folder, "--strict")
    strict = json.loads((folder / "metrics.json").read_text())
    assert code == 0 and strict["strict"] is True and strict["n_evaluated"] == 4
    assert strict["ciou@0.3"] == 0.5 and strict["ciou@0.5"] == 0.25  # cIoU 1, 1/3, 0, 0
    # a run with --strict on the finished folder computes the same (nothing is re-run)
    code, stdout, _ = gar_eval(capsys, *args, "--out", folder, "--strict")
    assert code == MINI_EXIT and "4 of 4 samples already done" in stdout
    assert json.loads((folder / "metrics.json").read_text()) == strict


def test_rescore_with_union_gt_boxes(mini, capsys, tmp_path):
    args, out, m = mini
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    gt = args[args.index("--gt") + 1]
    code, _, _ = gar_eval(capsys, "--rescore", folder, "--gt", gt, "--gt-boxes", "union")
    union = json.loads((folder / "metrics.json").read_text())
    # a's second GT box (21 x 21 px) is not predicted: cIoU 12544 / (12544 + 441) = 0.966 < 1, so the
    # success rate at t = 1 drops from 0.5 to 0: AUC loses half of the last interval's .025
    a = json.loads((folder / "samples" / "a.json").read_text())
    assert code == 0 and union["gt_boxes"] == "union" and union["ciou@0.5"] == m["ciou@0.5"] == 0.5
    assert union["auc"] == pytest.approx(0.6625 - 0.0125) and a["ciou"] == 1.0  # sample files untouched


# --------------------------------------------------------------------------- resume


def test_resume_after_a_kill_equals_an_uninterrupted_run(mini, capsys, tmp_path):
    args, _, m = mini
    out = tmp_path / "killed"
    argv = ["eval", *(str(a) for a in args), "--out", str(out)]
    script = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); from gar_agent.cli.app import main; sys.exit(main({argv!r}))"
    )
    # killed during the 3rd sample's Generate call: samples a, b are done, c is cut off mid-run
    proc = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, DIE_AFTER: "3"}, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 137, proc.stderr
    assert sorted(p.name for p in (out / "samples").glob("*.json")) == ["a.json", "b.json"]
    assert not (out / "metrics.json").exists()
    code, stdout, _ = gar_eval(capsys, *args, "--out", out)
    assert code == MINI_EXIT and "resuming" in stdout and "2 of 4 samples already done" in stdout
    assert json.loads((out / "metrics.json").read_text()) == m
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["a.json", "b.json", "c.json", "e.json"]


def test_resume_redoes_deleted_and_half_written_samples(mini, capsys, tmp_path):
    args, out, m = mini
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    (folder / "metrics.json").unlink()
    (folder / "samples" / "a.json").unlink()
    b = folder / "samples" / "b.json"
    b.write_text(b.read_text()[: len(b.read_text()) // 2])  # half-written
    (folder / "samples" / ".tmp-xyz.json").write_text("{")  # a killed atomic write's leftover
    code, stdout, _ = gar_eval(capsys, *args, "--out", folder)
    assert code == MINI_EXIT and "2 of 4 samples already done" in stdout
    assert json.loads((folder / "metrics.json").read_text()) == m
    assert json.loads(b.read_text())["ciou"] == pytest.approx(1 / 3)
    assert not (folder / "samples" / ".tmp-xyz.json").exists()


def test_resume_refuses_other_settings(mini, capsys, tmp_path):
    args, out, _ = mini
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    for extra, what in [
        (["--tau-av", "0.7"], "tau_av 0.5 -> 0.7"),
        (["--n-votes", "3"], "n_votes 5 -> 3"),
        (["--graph", "no_gate"], "graph 'gar' -> 'no_gate'"),
    ]:
        code, _, err = gar_eval(capsys, *args, "--out", folder, *extra)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("gar: error: ") and what in lines[0], err
    # another dataset on the same folder (its GT file is not even read: the folder check comes first)
    frames, audio, gt = make_benchmark(
        tmp_path / "solo", "music-solo", [{"id": "a", "drawn": [[1, 1, 9, 9]], "gt": [norm([1, 1, 9, 9])]}]
    )
    code, _, err = gar_eval(capsys, *data_args("music-solo", frames, audio, gt, folder))
    assert code == 2 and "dataset 'vggss-single' -> 'music-solo'" in err


def test_two_workers_give_the_same_metrics(mini, capsys, tmp_path):
    args, _, m = mini
    code, _, _ = gar_eval(capsys, *args, "--out", tmp_path / "w2", "--workers", "2")
    assert code == MINI_EXIT and json.loads((tmp_path / "w2" / "metrics.json").read_text()) == m


class AsyncRectModel(RectModel):
    """RectModel with an async path of its own: gar eval runs its samples as tasks on an event loop."""

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._generate(messages, stop, run_manager, **kwargs)


def test_samples_on_an_event_loop_give_what_threads_give(mini, capsys, tmp_path):
    from gar_agent.eval.execute import runs_on_loop

    assert runs_on_loop(AsyncRectModel()) and not runs_on_loop(RectModel())
    args, out, m = mini
    args = [("test_eval:AsyncRectModel" if a == BACKEND else a) for a in args]
    for workers in ("1", "3"):
        folder = tmp_path / f"loop{workers}"
        code, _, _ = gar_eval(capsys, *args, "--out", folder, "--workers", workers)
        ours = json.loads((folder / "metrics.json").read_text())
        assert code == MINI_EXIT and {**ours, "settings": None} == {**m, "settings": None}  # the backend's name aside
        for doc in (out / "samples").glob("*.json"):
            mine, theirs = json.loads((folder / "samples" / doc.name).read_text()), json.loads(doc.read_text())
            assert mine["score"] == theirs["score"]
            assert (mine["result"] or {}).get("sources") == (theirs["result"] or {}).get("sources")


def test_the_collector_is_held_back_only_while_samples_run():
    import gc

    from gar_agent.eval.execute import fewer_gc_pauses

    before = gc.get_threshold()
    with fewer_gc_pauses(12345):
        assert gc.get_threshold()[0] == 12345 and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


class InterruptedModel(RectModel):
    """RectModel until the 2nd sample's Generate call, where Ctrl-C arrives (in the main thread, as a
    real one does: the call itself runs in a worker thread of the run's event loop)."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        if run_manager.metadata.get("gar_stage") == "generate":
            image = next(b for b in messages[-1].content if isinstance(b, dict) and b.get("type") == "image")
            if bright_boxes(image["base64"]) == [[56, 0, 167, 223]]:  # sample b
                signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C reaches the main thread
                time.sleep(1)  # the call is still running when it arrives; the interrupted run drops it
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_ctrl_c_stops_with_a_resume_hint(mini, capsys, tmp_path):
    args, _, m = mini
    out = tmp_path / "o"
    code, _, err = gar_eval(capsys, *args, "--out", out, "--backend", "test_eval:InterruptedModel")
    assert code == 130 and err.strip() == (
        "gar: error: interrupted after 1 of 4 samples: run the same command again to resume"
    )
    assert [p.name for p in (out / "samples").iterdir()] == ["a.json"]
    code, _, _ = gar_eval(capsys, *args, "--out", out, "--backend", "test_eval:InterruptedModel", "--workers", "2")
    assert code == 130  # b still interrupts; whatever the other worker finished is kept
    assert gar_eval(capsys, *args, "--out", out)[0] == 2  # another backend is another setting
    settings = json.loads((out / "eval.json").read_text())["settings"]
    assert settings["backend"] == "test_eval:InterruptedModel"


def test_a_backend_typo_does_not_claim_the_folder(mini, capsys, tmp_path):
    args, _, m = mini
    out = tmp_path / "o"
    code, _, err = gar_eval(capsys, *args, "--out", out, "--backend", "test_eval:NoSuchModel")
    assert code == 2 and "has no attribute 'NoSuchModel'" in err and not (out / "eval.json").exists()
    code, _, _ = gar_eval(capsys, *args, "--out", out)
    assert code == MINI_EXIT and json.loads((out / "metrics.json").read_text()) == m


class SerialRectModel(RectModel):
    """Says what the local model says: one sample at a time is all it serves usefully."""

    concurrent_samples: int = 1
    in_flight: ClassVar[int] = 0
    most: ClassVar[int] = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        with _lock:
            SerialRectModel.in_flight += 1
            SerialRectModel.most = max(SerialRectModel.most, SerialRectModel.in_flight)
        try:
            time.sleep(0.01)
            return super()._generate(messages, stop, run_manager, **kwargs)
        finally:
            with _lock:
                SerialRectModel.in_flight -= 1


def test_a_model_that_serves_one_sample_at_a_time_gets_one(mini, capsys, tmp_path):
    args, _, m = mini
    # the CLI asks the model (concurrent_samples), it does not look for an adapter class
    code, _, err = gar_eval(capsys, *args, "--out", tmp_path / "o", "--workers", "4", "--backend",
                            "test_eval:SerialRectModel")  # fmt: skip
    assert code == MINI_EXIT and "runs one sample at a time (--workers 4 ignored)" in err
    assert SerialRectModel.most == 1
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert {k: metrics[k] for k in ("ciou@0.5", "ap", "n_total")} == {k: m[k] for k in ("ciou@0.5", "ap", "n_total")}


# --------------------------------------------------------------------------- gate sweep


def test_gate_sweep_reports_what_needs_the_model(mini, capsys, tmp_path):
    _, out, m = mini
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    code, stdout, _ = gar_eval(capsys, "--sweep", folder, "--tau-av", "0.3,0.5,0.7", "--n-votes", "3,5")
    assert code == 0 and "needs model" in stdout
    report = json.loads((folder / "sweep.json").read_text())
    assert report["recorded"] == {"tau_av": 0.5, "tau_audio": 0.5, "n_votes": 5}
    by = {(s["tau_av"], s["n_votes"]): s for s in report["settings"]}
    assert len(by) == 6
    for n in (3, 5):
        for tau in (0.3, 0.5):  # av 0.6 passes: the recorded skip stands, no call needed
            s = by[(tau, n)]
            assert s["n_needs_model"] == 0 and s["n_decided"] == 2 and s["metrics"]["n_total"] == 4
            assert {k: s["metrics"][k] for k in ("ciou@0.5", "auc", "ap", "n_failed", "skipped")} == {
                k: m[k] for k in ("ciou@0.5", "auc", "ap", "n_failed", "skipped")
            }
        # 0.7: a and b would now be refined, a call their recordings lack; failed c and e stay failed
        s = by[(0.7, n)]
        assert s["n_needs_model"] == 2 and s["n_decided"] == 0 and [x["id"] for x in s["needs_model"]] == ["a", "b"]
        assert s["needs_model"][0]["call"] == "refine call for source 0 (refine_single.txt, n=1)"
        assert s["metrics"]["n_total"] == 2 and s["metrics"]["n_failed"] == 2 and s["metrics"]["ciou@0.5"] is None
    # more votes than were recorded also needs the model
    code, _, _ = gar_eval(capsys, "--sweep", folder, "--n-votes", "7")
    [s] = json.loads((folder / "sweep.json").read_text())["settings"]
    assert code == 0 and s["n_needs_model"] == 2 and "analyze call for source 0" in s["needs_model"][0]["call"]


# --------------------------------------------------------------------------- the other formats


@pytest.mark.parametrize("dataset", ["music-solo", "music-duet", "vggss-duet"])
def test_other_formats(dataset, capsys, tmp_path):
    duet = dataset != "music-solo"
    size = (448, 224) if duet else (224, 224)
    drawn = [[40, 50, 150, 200], [260, 30, 400, 180]] if duet else [[40, 50, 150, 200]]
    gt = [norm(b, *size) for b in drawn]
    half = [[40, 50, 150, 200], [330, 30, 400, 180]] if duet else [[95, 50, 150, 200]]  # second sample: GT cut
    entries = [
        {"id": "s1", "drawn": drawn, "gt": gt, "size": size},
        {"id": "s2", "drawn": drawn, "gt": [norm(b, *size) for b in half], "size": size},
    ]
    frames, audio, gt_file = make_benchmark(tmp_path, dataset, entries)
    code, stdout, err = gar_eval(capsys, *data_args(dataset, frames, audio, gt_file, tmp_path / "out"))
    assert code == 0, err
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    s1 = json.loads((tmp_path / "out" / "samples" / "s1.json").read_text())
    s2 = json.loads((tmp_path / "out" / "samples" / "s2.json").read_text())
    assert s1["ciou"] == pytest.approx(1.0) and s2["ciou"] < 1.0
    assert m["n_evaluated"] == 2 and m["settings"]["sources"] == (2 if duet else 1)
    if duet:
        assert s1["matched_mean_iou"] == pytest.approx(1.0) and s1["per_source_iou"] == pytest.approx([1.0, 1.0])
        assert m["matched_mean_iou"] == pytest.approx((1.0 + s2["matched_mean_iou"]) / 2)
        assert "matched IoU" in stdout
    taus = {"music-solo": (0.75, 0.75), "music-duet": (0.75, 0.5), "vggss-duet": (0.75, 0.75)}[dataset]
    assert (m["settings"]["tau_av"], m["settings"]["tau_audio"]) == taus
    assert m["refined"] == len(drawn) * 2  # av 0.6 < 0.75: every source refined (the box kept)


# --------------------------------------------------------------------------- bad input, all failed


def test_bad_input_is_one_line_and_exit_2(mini, capsys, tmp_path):
    args, out, _ = mini
    data = dict(zip(args[::2], args[1::2]))
    frames, audio, gt = data["--frames"], data["--audio"], data["--gt"]
    solo = tmp_path / "solo.json"
    solo.write_text(json.dumps([{"file": "a", "class": "x", "bbox": [0.1, 0.1, 0.2, 0.2]}]))
    ids = tmp_path / "ids.txt"
    ids.write_text("nope\n")
    base = ["--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--backend", BACKEND]
    o = ["--out", tmp_path / "o"]
    cases = [
        ([*base, "--gt", tmp_path / "none.json", *o], "ground-truth file not found"),
        ([*base, "--gt", solo, *o], "is not a VGG-SS file"),
        (
            ["--dataset", "vggss-single", "--frames", tmp_path / "nof", "--audio", audio, "--gt", gt, *o],
            "--frames folder",
        ),
        ([*base, "--gt", gt, "--tau-av", "1.5", *o], "--tau-av 1.5: must be between 0 and 1"),
        ([*base, "--gt", gt, "--tau-av", "0.3,0.5", *o], "a run takes one value"),
        ([*base, "--gt", gt, "--n-votes", "x", *o], "--n-votes 'x'"),
        (["--dataset", "nope", "--frames", frames, "--audio", audio, "--gt", gt, *o], "--dataset 'nope': use one of"),
        ([*base, "--gt", gt, "--gt-boxes", "all", *o], "--gt-boxes 'all'"),
        ([*base, "--gt", gt, "--ids", ids, *o], "nothing to evaluate: no id selected"),
        ([*base, "--gt", gt, "--backend", "nonsense", *o], "--backend 'nonsense'"),
        ([*base, "--gt", gt], "give one of --out DIR"),
        (["--rescore", out, "--sweep", out], "not --rescore and --sweep"),
        (["--rescore", out, "--backend", BACKEND], "--backend is for a run (--out), not for --rescore"),
        (["--rescore", out, "--gt-boxes", "union"], "give --gt FILE to re-read them"),
        (["--rescore", tmp_path], "is not an evaluation folder"),
        (["--sweep", out, "--tau-av", "a,b"], "--tau-av 'a,b'"),
    ]
    for argv, why in cases:
        code, stdout, err = gar_eval(capsys, *argv)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("gar: error: ") and why in lines[0], (argv, err)
        assert "Traceback" not in err


def test_every_sample_failing_writes_metrics_and_exits_1(capsys, tmp_path):
    entries = [{"id": i, "drawn": [], "gt": [norm([0, 0, 50, 50])]} for i in ("x", "y")]
    frames, audio, gt = make_benchmark(tmp_path, "vggss-single", entries)
    code, _, err = gar_eval(capsys, *data_args("vggss-single", frames, audio, gt, tmp_path / "o"))
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert code == 1 and "every sample failed (2)" in err
    assert (m["n_total"], m["n_failed"], m["n_evaluated"], m["ciou@0.5"], m["ap"]) == (2, 2, 0, None, None)


# --------------------------------------------------------------------------- subcommands


def test_subcommands_do_what_the_older_spelling_does(mini, capsys, tmp_path):
    args, out, m = mini
    code, _, err = gar_eval(capsys, "run", *args, "--out", tmp_path / "o")
    assert code == MINI_EXIT, err
    assert json.loads((tmp_path / "o" / "metrics.json").read_text()) == m
    assert json.loads((tmp_path / "o" / "eval.json").read_text())["settings"]["n_votes"] == 5
    # rescore and sweep take the folder as an argument
    assert gar_eval(capsys, "rescore", tmp_path / "o", "--strict")[0] == 0
    strict = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert strict["strict"] is True and strict["n_evaluated"] == strict["n_total"]
    code, stdout, _ = gar_eval(capsys, "sweep", tmp_path / "o", "--tau-av", "0.3,0.5")
    assert code == 0 and (tmp_path / "o" / "sweep.json").is_file()
    # gar eval run shares --n-votes with gar run: one integer, not a list
    code, _, err = gar_eval(capsys, "run", *args, "--out", tmp_path / "p", "--n-votes", "3,5")
    assert code == 2 and "--n-votes" in err and not (tmp_path / "p").exists()


def test_processes_share_the_samples_and_give_the_same_numbers(mini, capsys, tmp_path):
    args, _, m = mini
    code, _, err = gar_eval(capsys, "run", *args, "--out", tmp_path / "o", "--workers", "4", "--processes", "2")
    assert code == MINI_EXIT, err
    assert json.loads((tmp_path / "o" / "metrics.json").read_text()) == m
    ids = [json.loads(p.read_text())["id"] for p in (tmp_path / "o" / "samples").glob("*.json")]
    assert len(ids) == len(set(ids)) == m["n_total"]  # every sample once, none twice
    # a model that runs on one device in this process is not forked
    code, _, err = gar_eval(capsys, "run", *args, "--out", tmp_path / "p", "--processes", "2",
                            "--backend", "test_eval:SerialRectModel")  # fmt: skip
    assert code == 2 and "--processes 2" in err and not (tmp_path / "p" / "eval.json").exists()


def test_sample_files_carry_the_benchmarks_classes(mini):
    _, out, _ = mini
    docs = [json.loads(p.read_text()) for p in (out / "samples").glob("*.json")]
    assert docs and all(d["gt_classes"] == ["a"] for d in docs)  # the annotation's class of each sample


def test_trace_list_of_an_evaluation_folder_lists_its_sample_runs(mini, capsys):
    """`gar trace list OUT` (the folder the user just evaluated into): its runs are in OUT/traces."""
    _, out, _ = mini
    code, shown, _ = cli(capsys, "trace", "list", out)
    assert code == 0
    runs = sorted(p.name for p in (out / "traces").iterdir() if (p / "trace.json").is_file())
    rows = [c for line in shown.splitlines() if line.startswith("│") and (c := line.split("│")[1].strip())]
    assert runs and sorted(rows) == runs, shown

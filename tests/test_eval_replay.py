"""`gar eval replay` and `gar eval compare`: a whole evaluation re-run from its recorded calls, and
two evaluations compared with paired statistics.

The benchmark has white rectangles on black frames. `VaryModel` (`--backend test_eval_replay:VaryModel`)
points at the rectangle it sees and votes an av_consistency that grows with the rectangle's left
edge, so a threshold gates some samples and not others; its Refine shrinks the box by 8 pixels a side.
`CountingModel` is the same model counting the calls that reach it: what a replay sent to the backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from benchmarks import ENTRIES, X1, RectModel, bright_boxes, make_benchmark
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from trace_versions import as_v2

from gar_agent.cli.app import main
from gar_agent.eval import compare as cmp
from gar_agent.eval.metrics import SampleScore, box_to_grid, summarize
from gar_agent.eval.store import sample_document
from gar_agent.trace.spec_file import read_spec
from gar_agent.trace.store import read_trace

SHIPPED_GRAPH = Path(__file__).resolve().parents[1] / "graphs" / "gar.py"


def av_of(x1: int) -> float:
    """The vote's av_consistency for a rectangle whose left edge is x1: 0.2 at 0, 0.8 at 120."""
    return round(0.2 + 0.6 * min(x1, 120) / 120, 3)


class VaryModel(RectModel):
    """RectModel with av_consistency from the rectangle's position and a Refine that shrinks the box."""

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        meta = (run_manager.metadata if run_manager else None) or {}
        stage, n = meta.get("gar_stage"), int(kwargs.get("n") or 1)
        if stage not in ("analyze", "refine"):
            return super()._generate(messages, stop, run_manager, **kwargs)
        image = next(b for b in messages[-1].content if isinstance(b, dict) and b.get("type") == "image")
        x1, y1, x2, y2 = bright_boxes(image["base64"])[0]
        if stage == "analyze":
            answer = {"av_consistency": av_of(x1), "keep": True, "role_tags": ["body"], "anchor_votes": []}
        else:
            answer = {"bbox": [x1 + 8, y1 + 8, x2 - 8, y2 - 8], "changed": True, "refined_description": "smaller"}
        text = json.dumps(answer)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text)) for _ in range(n)])


class CountingModel(VaryModel):
    """VaryModel that lists every call it is asked: (sample, stage, source)."""

    calls: ClassVar[list[tuple]] = []
    lock: ClassVar[threading.Lock] = threading.Lock()

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        meta = (run_manager.metadata if run_manager else None) or {}
        with CountingModel.lock:
            CountingModel.calls.append((meta.get("gar_thread"), meta.get("gar_stage"), meta.get("gar_source")))
        return super()._generate(messages, stop, run_manager, **kwargs)


# left edges 0..112: av 0.2 .. 0.76; the recorded gate (tau_av 0.5) refines x1 < 60 (av < 0.5)


def gar(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One recorded evaluation (graph gar, tau_av 0.5) of the benchmark: (data args, its folder)."""
    root = tmp_path_factory.mktemp("replay")
    frames, audio, gt = make_benchmark(root, "vggss-single", ENTRIES)
    data = ["--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    out = root / "src"
    code = main([str(a) for a in ["eval", "run", *data, "--backend", "test_eval_replay:VaryModel", "--out", out]])
    assert code == 0
    return data, out


def _docs(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "samples").glob("*.json"))}


def _same_results(a: dict, b: dict) -> None:
    for key in ("ciou", "ap", "score", "gt_classes"):
        assert a[key] == b[key], key
    assert (a["result"] is None) == (b["result"] is None)
    if a["result"] is not None:
        assert a["result"]["sources"] == b["result"]["sources"] and a["result"]["error"] == b["result"]["error"]


def _refined(folder: Path) -> set[str]:
    return {sid for sid, d in _docs(folder).items() if d["score"]["refined"]}


def test_a_replay_with_nothing_changed_is_the_evaluation_and_makes_no_call(source, capsys, tmp_path):
    data, src = source
    dst = tmp_path / "same"
    CountingModel.calls.clear()
    code, out, err = gar(capsys, "eval", "replay", src, "--out", dst, "--backend", "test_eval_replay:CountingModel")
    assert code == 0, err
    assert CountingModel.calls == []
    metrics, recorded = json.loads((dst / "metrics.json").read_text()), json.loads((src / "metrics.json").read_text())
    keys = ("ciou@0.3", "ciou@0.5", "auc", "ap", "piap", "n_total", "n_evaluated", "n_failed", "refined", "skipped")
    assert {k: metrics[k] for k in keys} == {k: recorded[k] for k in keys}
    a, b = _docs(src), _docs(dst)
    assert sorted(a) == sorted(b)
    for sid in a:
        _same_results(a[sid], b[sid])
    report = json.loads((dst / "replay.json").read_text())
    assert report["new"] == 0 and report["new_tokens"] == 0 and report["reused"] > 0
    assert report["replayed"] == 7 and report["carried_over"] == 1  # zblack failed in the source: kept as it was
    assert "calls: " in out and " reused from the recording, 0 new" in out
    trace = json.loads((dst / "traces" / "s0" / "trace.json").read_text())
    assert trace["parent"] == "s0" and trace["run_id"] == "s0"
    # DST is an ordinary evaluation folder: rescore and sweep read it
    code, _, _ = gar(capsys, "eval", "rescore", dst)
    assert code == 0 and json.loads((dst / "metrics.json").read_text())["ciou@0.5"] == recorded["ciou@0.5"]
    code, _, _ = gar(capsys, "eval", "sweep", dst, "--tau-av", "0.3")
    assert code == 0
    # samples replayed three at a time write the same
    threads = tmp_path / "threads"
    assert gar(capsys, "eval", "replay", src, "--out", threads, "--workers", "3")[0] == 0
    c = _docs(threads)
    for sid in a:
        _same_results(a[sid], c[sid])


def test_a_stricter_tau_sends_only_the_newly_gated_refines_to_the_backend(source, capsys, tmp_path):
    _, src = source
    assert _refined(src) == {"s0", "s1", "s2"}  # av 0.2, 0.28, 0.4 < 0.5
    CountingModel.calls.clear()
    dst = tmp_path / "strict"
    code, out, err = gar(
        capsys, "eval", "replay", src, "--out", dst, "--tau-av", "0.7", "--backend", "test_eval_replay:CountingModel"
    )
    assert code == 0, err
    newly = {f"s{i}" for i, x in enumerate(X1) if 0.5 <= av_of(x) < 0.7}
    assert newly == {"s3", "s4", "s5"}
    assert sorted(CountingModel.calls) == sorted((sid, "refine", 0) for sid in newly)
    assert _refined(dst) == {"s0", "s1", "s2", "s3", "s4", "s5"}
    report = json.loads((dst / "replay.json").read_text())
    assert report["new"] == 3 and report["new_tokens"] == 0  # the test model reports no usage


def test_without_a_backend_the_samples_needing_a_call_are_listed_then_a_backend_finishes_them(source, capsys, tmp_path):
    _, src = source
    dst = tmp_path / "nogate"
    code, out, err = gar(capsys, "eval", "replay", src, "--out", dst, "--graph", "no_gate")
    assert code == 3
    assert "4 sample(s) need a call the recording lacks" in err and "refine call for source 0" in err
    assert "--backend" in err and "Traceback" not in err
    assert sorted(_docs(dst)) == ["s0", "s1", "s2", "zblack"]  # the others are not written
    assert not (dst / "traces" / "s3").exists()
    needs = json.loads((dst / "replay.json").read_text())["needs_model"]
    assert [n["id"] for n in needs] == ["s3", "s4", "s5", "s6"]
    # the same command with a backend resumes: only the gate-skipped samples' Refine is new
    CountingModel.calls.clear()
    code, out, err = gar(
        capsys, "eval", "replay", src, "--out", dst, "--graph", "no_gate", "--backend", "test_eval_replay:CountingModel"
    )
    assert code == 0, err
    assert sorted(CountingModel.calls) == [(f"s{i}", "refine", 0) for i in range(3, 7)]
    assert _refined(dst) == {f"s{i}" for i in range(7)}
    assert json.loads((dst / "eval.json").read_text())["settings"]["graph"] == "no_gate"


def test_a_new_graph_file_and_a_changed_prompt_are_served_up_to_the_first_changed_request(source, capsys, tmp_path):
    _, src = source
    graph = tmp_path / "my_gar.py"
    graph.write_text(SHIPPED_GRAPH.read_text() + "\n# a researcher's copy\n")
    CountingModel.calls.clear()
    code, _, err = gar(
        capsys,
        "eval",
        "replay",
        src,
        "--out",
        tmp_path / "g",
        "--graph",
        graph,
        "--backend",
        "test_eval_replay:CountingModel",
    )
    assert code == 0, err
    assert CountingModel.calls == []  # same wiring, same requests: all from the recording
    assert json.loads((tmp_path / "g" / "eval.json").read_text())["settings"]["graph"] == "my_gar"
    # an edited Refine template: everything before Refine is reused, each Refine is new
    prompts = tmp_path / "prompts"
    shutil.copytree(Path(__file__).resolve().parents[1] / "gar_agent" / "templates", prompts)
    (prompts / "refine_single.txt").write_text((prompts / "refine_single.txt").read_text() + "\nBe brief.\n")
    CountingModel.calls.clear()
    code, _, err = gar(
        capsys, "eval", "replay", src, "--out", tmp_path / "p", "--prompts", prompts,
        "--backend", "test_eval_replay:CountingModel",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(CountingModel.calls) == [(sid, "refine", 0) for sid in ("s0", "s1", "s2")]


def test_an_old_folder_without_replay_records_or_spec_still_replays(source, capsys, tmp_path):
    _, src = source
    old = tmp_path / "old"
    shutil.copytree(src, old)
    config = json.loads((old / "eval.json").read_text())
    for key in ("spec", "replay"):
        config.pop(key, None)
    (old / "eval.json").write_text(json.dumps(config))
    (old / "spec.json").unlink()
    for p in (old / "samples").glob("*.json"):
        doc = json.loads(p.read_text())
        doc.pop("gt_classes", None)
        p.write_text(json.dumps(doc))
    for p in (old / "traces").glob("*/trace.json"):  # a schema-2 trace: no run spec
        assert read_trace(p).spec is not None
        p.write_text(json.dumps(as_v2(read_trace(p))))
    code, _, err = gar(capsys, "eval", "replay", old, "--out", tmp_path / "d")
    assert code == 0, err
    assert read_spec(tmp_path / "d" / "spec.json").backend.name == "recording"
    code, _, err = gar(
        capsys, "eval", "replay", old, "--out", tmp_path / "e", "--graph", "no_gate", "--backend", "recorded"
    )
    assert code == 2 and "may not import" in err  # eval.json still names the backend: refused all the same


def test_replay_never_runs_the_graph_file_a_folder_names(source, capsys, tmp_path):
    _, src = source
    folder = tmp_path / "foreign"
    shutil.copytree(src, folder)
    planted = tmp_path / "planted.py"
    marker = tmp_path / "ran"
    planted.write_text(f"open({str(marker)!r}, 'w').close()\n" + SHIPPED_GRAPH.read_text())
    config = json.loads((folder / "eval.json").read_text())
    config["settings"].update(graph="planted", graph_file=str(planted), graph_sha256="0" * 64)
    (folder / "eval.json").write_text(json.dumps(config))
    code, _, err = gar(capsys, "eval", "replay", folder, "--out", tmp_path / "d")
    assert code == 2 and "no shipped graph" in err and "--graph" in err
    assert not marker.exists()


def test_replay_refuses_bad_input_in_one_line(source, capsys, tmp_path):
    _, src = source
    code, _, err = gar(capsys, "eval", "replay", tmp_path / "nothing", "--out", tmp_path / "x")
    assert code == 2 and "not an evaluation folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = gar(capsys, "eval", "replay", src, "--out", src)
    assert code == 2 and "is the source folder" in err
    code, _, err = gar(capsys, "eval", "replay", src, "--out", tmp_path / "y", "--graph", "nope")
    assert code == 2 and "nope" in err and "Traceback" not in err
    dst = tmp_path / "z"
    assert gar(capsys, "eval", "replay", src, "--out", dst)[0] == 0
    code, _, err = gar(capsys, "eval", "replay", src, "--out", dst, "--tau-av", "0.9")
    assert code == 2 and "other settings" in err


# --------------------------------------------------------------------------- compare


def _score(sid: str, pred: list[list[float]], gt: list[list[float]], failed: bool = False) -> SampleScore:
    return SampleScore(id=sid, pred_boxes=pred, gt_boxes=gt, failed=failed, image_size=[224, 224])


def _random_folder(rng, n: int, shift: float) -> list[SampleScore]:
    out = []
    for i in range(n):
        x, y = rng.uniform(0, 0.5, 2)
        gt = [[x, y, x + 0.4, y + 0.4]]
        dx = rng.uniform(-shift, shift)
        out.append(_score(f"{i:03d}", [[x + dx, y, x + dx + 0.4, y + 0.4]], gt, failed=i % 17 == 5))
    return out


def _folder(scores: list[SampleScore]) -> cmp.Folder:
    """A Folder as load_folder builds it, from scores."""
    n = len(scores)
    f = cmp.Folder(Path("."), {"dataset": "vggss-single", "settings": {}}, [], np.zeros(n, bool),
                   *(np.zeros(n) for _ in range(4)), [], [], [])  # fmt: skip
    f.matched[:] = np.nan
    for i, s in enumerate(scores):
        gt, pred = s.masks()
        g, p = gt > 0.5, pred >= 0.5
        f.ids.append(s.id)
        f.failed[i] = s.failed
        f.tp[i], f.on[i], f.pos[i] = np.count_nonzero(g & p), np.count_nonzero(p), np.count_nonzero(g)
        f.gate.append("skipped")
        f.classes.append("-")
        f.gt.append(s.gt_boxes)
    return f


def test_the_bootstrap_interval_is_the_slow_reference_computation_and_depends_on_its_seed():
    rng = np.random.default_rng(7)
    a_scores, b_scores = _random_folder(rng, 40, 0.3), _random_folder(rng, 40, 0.1)
    # the same GT in both: B's boxes are drawn again with a smaller shift
    b_scores = [s.model_copy(update={"gt_boxes": a.gt_boxes}) for s, a in zip(b_scores, a_scores)]
    a, b = _folder(a_scores), _folder(b_scores)
    report = cmp.compare_pair(a, b, resamples=300, seed=3)
    paired = [i for i in range(40) if not (a_scores[i].failed or b_scores[i].failed)]
    assert report["n_paired"] == len(paired)
    # the slow way: summarize() on every resample, drawn the same way
    deltas = {k: [] for k in cmp.METRICS}
    for w in cmp.resample_counts(len(paired), 300, seed=3):
        for row in w:
            take = [paired[j] for j in np.repeat(np.arange(len(paired)), row.astype(int))]
            ma = summarize([a_scores[i] for i in take], duet=False)
            mb = summarize([b_scores[i] for i in take], duet=False)
            for k in deltas:
                deltas[k].append(mb[k] - ma[k])
    full_a = summarize([a_scores[i] for i in paired], duet=False)
    full_b = summarize([b_scores[i] for i in paired], duet=False)
    for row in report["metrics"]:
        k = row["metric"]
        assert row["a"] == pytest.approx(full_a[k]) and row["b"] == pytest.approx(full_b[k])
        assert row["ci95"] == pytest.approx(list(np.percentile(deltas[k], [2.5, 97.5])), abs=1e-9)
    again = cmp.compare_pair(a, b, resamples=300, seed=3)
    other = cmp.compare_pair(a, b, resamples=300, seed=4)
    assert [r["ci95"] for r in again["metrics"]] == [r["ci95"] for r in report["metrics"]]
    assert [r["ci95"] for r in other["metrics"]] != [r["ci95"] for r in report["metrics"]]


def test_the_vectorised_grid_is_box_to_grid_box_by_box():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([rng.uniform(-0.2, 1.2, (3000, 4)), rng.integers(0, 9, (500, 4)) / 8])
    sizes = rng.choice([[224, 224], [640, 480], [1280, 720], [333, 517], [7, 5]], len(boxes))
    got = cmp.grid_corners(boxes, sizes)
    want = [box_to_grid(b, 224, s) for b, s in zip(boxes.tolist(), sizes.tolist())]
    assert got.astype(int).tolist() == [list(w) for w in want]


def test_pixel_counts_of_one_box_samples_are_the_masks_counts(tmp_path):
    rng = np.random.default_rng(1)
    scores = _random_folder(rng, 60, 0.4)
    slow = _folder(scores)
    d = tmp_path
    (d / "samples").mkdir()
    (d / "eval.json").write_text(json.dumps({"format": 1, "dataset": "vggss-single", "settings": {}}))
    for s in scores:
        (d / "samples" / f"{s.id}.json").write_text(json.dumps(sample_document(s, None, 0.0, None, None)))
    fast = cmp.load_folder(d)
    assert fast.ids == slow.ids
    for k in ("tp", "on", "pos"):
        assert getattr(fast, k).tolist() == getattr(slow, k).tolist(), k


def test_mcnemar_counts_the_discordant_pairs_by_hand():
    a = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 0, 0, 1, 0, 0, 1, 1], bool)
    test = cmp.mcnemar(a, b)
    assert (test["a_only"], test["b_only"], test["both"]) == (4, 2, 2)
    # exact two-sided binomial on 6 discordant pairs, 2 of them B's: 2 * P(X <= 2), X ~ Bin(6, 1/2) = 2 * 22/64
    assert test["p_value"] == pytest.approx(44 / 64)
    assert cmp.mcnemar(a, a)["p_value"] == 1.0


@pytest.mark.parametrize("n", [1, 2, 7, 30, 31, 200, 1001, 5000])
def test_the_exact_binomial_of_mcnemar_is_scipys(n):
    from scipy.stats import binomtest  # the reference; compare itself does without scipy (start-up time)

    for k in sorted({0, 1, n // 3, n // 2 - 1, n // 2, n // 2 + 1, (n + 1) // 2, n - 1, n} & set(range(n + 1))):
        assert cmp.binomial_two_sided_half(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-12, abs=1e-300)


def test_compare_of_two_replays_lists_what_changed_and_why(source, capsys, tmp_path):
    _, src = source
    dst = tmp_path / "strict"
    assert (
        gar(capsys, "eval", "replay", src, "--out", dst, "--tau-av", "0.7", "--backend", "test_eval_replay:VaryModel")[
            0
        ]
        == 0
    )
    code, out, err = gar(capsys, "eval", "compare", src, dst, "--json", "--resamples", "500")
    assert code == 0, err
    report = json.loads(out)
    [c] = report["comparisons"]
    assert c["n_paired"] == 7 and c["only_a"] == [] and c["only_b"] == []
    assert sorted(e["id"] for e in c["changed"]) == ["s3", "s4", "s5"]
    for e in c["changed"]:
        assert (e["gate_a"], e["gate_b"]) == ("skipped", "refined") and e["delta"] != 0
    groups = {g["group"]: g for g in c["by_gate"]}
    assert groups["skipped -> refined"]["n"] == 3 and groups["refined -> refined"]["n"] == 3
    assert groups["skipped -> skipped"] == {"group": "skipped -> skipped", "n": 1, "up": 0, "down": 0, "mean_delta": 0}
    assert c["summary"]["gate_changed"] == 3
    code, out, _ = gar(capsys, "eval", "compare", src, dst, "--resamples", "500")
    assert code == 0 and "McNemar" in out and "95% interval" in out


def test_compare_refuses_folders_of_other_benchmarks_or_gt(source, capsys, tmp_path):
    _, src = source
    other = tmp_path / "other"
    shutil.copytree(src, other)
    config = json.loads((other / "eval.json").read_text())
    (other / "eval.json").write_text(json.dumps({**config, "dataset": "music-solo"}))
    code, _, err = gar(capsys, "eval", "compare", src, other)
    assert code == 2 and "same benchmark" in err and len(err.strip().splitlines()) == 1
    gt = tmp_path / "gt.json"
    gt.write_text("[]")
    (other / "eval.json").write_text(json.dumps({**config, "data": {**config["data"], "gt": str(gt)}}))
    code, _, err = gar(capsys, "eval", "compare", src, other)
    assert code == 2 and "different GT files" in err
    (other / "eval.json").write_text(json.dumps(config))
    doc = json.loads((other / "samples" / "s1.json").read_text())
    doc["score"]["gt_boxes"] = [[0, 0, 0.5, 0.5]]
    (other / "samples" / "s1.json").write_text(json.dumps(doc))
    code, _, err = gar(capsys, "eval", "compare", src, other)
    assert code == 2 and "sample s1 has other GT boxes" in err
    code, _, err = gar(capsys, "eval", "compare", src)
    assert code == 2 and "two or more folders" in err


# --------------------------------------------------------------------------- the run spec


SCRIPT = {
    "audio": [{"audio_class": "dog", "audio_confidence_score": 0.9}],
    "generate": [{"bbox": [40, 40, 140, 180], "description": "a dog"}],
    "analyze": [{"av_consistency": 0.6, "keep": True, "role_tags": ["body"], "anchor_votes": []}],
    "refine": [{"bbox": [44, 44, 136, 176], "changed": True, "refined_description": "The dog barks."}],
}


def test_backend_recorded_rebuilds_the_sources_backend_and_the_replay_records_its_spec(source, capsys, tmp_path):
    data, _ = source
    script = tmp_path / "script.json"
    script.write_text(json.dumps(SCRIPT))
    src = tmp_path / "scripted"
    assert gar(capsys, "eval", "run", *data, "--ids", _ids(tmp_path, "s0", "s3"), "--backend", f"scripted:{script}",
               "--out", src)[0] == 0  # fmt: skip
    dst = tmp_path / "nogate"
    code, out, err = gar(capsys, "eval", "replay", src, "--out", dst, "--graph", "no_gate", "--backend", "recorded")
    assert code == 0, err
    report = json.loads((dst / "replay.json").read_text())
    assert report["new"] == 2 and report["replayed"] == 2  # each sample's Refine, answered by the rebuilt script
    spec = read_spec(dst / "spec.json")
    assert spec.backend.name == f"scripted:{script}" and spec.graph.name == "no_gate" and spec.graph.source
    assert spec.command == "eval-replay" and spec.options["source"] == str(src.resolve())
    trace = read_trace(dst / "traces" / "s3" / "trace.json")
    assert trace.spec is not None and trace.spec.is_slim and trace.spec.graph.sha256 == spec.graph.sha256


def test_backend_recorded_never_imports_a_module_the_folder_names(source, capsys, tmp_path):
    _, src = source  # made with --backend test_eval_replay:VaryModel
    code, _, err = gar(
        capsys, "eval", "replay", src, "--out", tmp_path / "d", "--graph", "no_gate", "--backend", "recorded"
    )
    assert code == 2 and "test_eval_replay:VaryModel" in err and "--backend" in err
    assert len(err.strip().splitlines()) == 1


def _ids(tmp_path: Path, *ids: str) -> Path:
    path = tmp_path / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


def test_a_sample_the_replay_raises_on_fails_alone_and_the_folder_is_held(source, capsys, tmp_path, monkeypatch):
    from gar_agent.eval import replay as replay_module

    _, src = source
    real = replay_module.run_and_record

    def flaky(*args, thread_id=None, **kwargs):
        if thread_id == "s2":
            raise KeyError("a bug on s2")
        return real(*args, thread_id=thread_id, **kwargs)

    monkeypatch.setattr(replay_module, "run_and_record", flaky)
    dst = tmp_path / "d"
    code, _, err = gar(capsys, "eval", "replay", src, "--out", dst)
    # the rest is replayed and scored, and the run says it is not whole, as gar eval run does
    assert code == 1 and "failed on bad input (0) or an internal error (1)" in err and "(s2)" in err
    s2 = _docs(dst)["s2"]
    assert s2["score"]["failed"] and s2["score"]["error"].startswith("internal error: KeyError")
    assert "a bug on s2" in s2["traceback"]
    assert sorted(d for d, doc in _docs(dst).items() if not doc["score"]["failed"]) == [
        f"s{i}" for i in (0, 1, 3, 4, 5, 6)
    ]
    from gar_agent.eval.store import hold_folder

    with hold_folder(dst):  # another process writing DST: a second replay stops with one line
        code, _, err = gar(capsys, "eval", "replay", src, "--out", dst)
    assert code == 2 and "in use by another gar eval" in err


class DyingModel(VaryModel):
    """VaryModel whose process dies (as a kill would end it) on its second call: a replay killed mid-way."""

    calls: ClassVar[int] = 0

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        DyingModel.calls += 1
        if DyingModel.calls == 2:
            os._exit(137)
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_a_killed_replay_resumes_to_what_an_uninterrupted_one_writes(source, capsys, tmp_path):
    _, src = source
    tests = Path(__file__).resolve().parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")]),
    }
    dst = tmp_path / "killed"
    argv = [sys.executable, "-m", "gar_agent", "eval", "replay", str(src), "--out", str(dst), "--graph", "no_gate"]
    proc = subprocess.run([*argv, "--backend", "test_eval_replay:DyingModel"], env=env, capture_output=True, text=True)
    assert proc.returncode == 137
    before = sorted(_docs(dst))
    assert "s3" in before and "s4" not in before  # s3's Refine was answered, s4's killed the process
    CountingModel.calls.clear()
    code, _, err = gar(
        capsys, "eval", "replay", src, "--out", dst, "--graph", "no_gate", "--backend", "test_eval_replay:CountingModel"
    )
    assert code == 0, err
    assert sorted(CountingModel.calls) == [(f"s{i}", "refine", 0) for i in (4, 5, 6)]  # nothing asked twice
    whole = tmp_path / "whole"
    assert (
        gar(
            capsys,
            "eval",
            "replay",
            src,
            "--out",
            whole,
            "--graph",
            "no_gate",
            "--backend",
            "test_eval_replay:VaryModel",
        )[0]
        == 0
    )
    a, b = _docs(whole), _docs(dst)
    assert sorted(a) == sorted(b)
    for sid in a:
        _same_results(a[sid], b[sid])
    keys = ("ciou@0.3", "ciou@0.5", "auc", "ap", "piap", "n_evaluated", "refined", "skipped")
    ma, mb = (json.loads((f / "metrics.json").read_text()) for f in (whole, dst))
    assert {k: ma[k] for k in keys} == {k: mb[k] for k in keys}
    assert json.loads((dst / "replay.json").read_text())["new"] == 4  # 1 before the kill (its sample file) + 3


def _duet_folder(root: Path, scores: list[SampleScore]) -> Path:
    (root / "samples").mkdir(parents=True)
    (root / "eval.json").write_text(json.dumps({"format": 1, "dataset": "vggss-duet", "settings": {}}))
    for s in scores:
        (root / "samples" / f"{s.id}.json").write_text(json.dumps(sample_document(s, None, 0.0, None, None)))
    return root


def test_duet_intervals_include_the_matched_iou_against_the_slow_reference(tmp_path):
    rng = np.random.default_rng(11)

    def duet(shift: float) -> list[SampleScore]:
        out = []
        for i in range(25):
            gts = [[x, y, x + 0.3, y + 0.3] for x, y in rng.uniform(0, 0.6, (2, 2))]
            preds = [[b[0] + d, b[1], b[2] + d, b[3]] for b, d in zip(gts, rng.uniform(-shift, shift, 2))]
            out.append(_score(f"{i:02d}", preds[: 1 + (i % 5 != 0)], gts, failed=i == 7))
        return out

    a_scores = duet(0.2)
    b_scores = [s.model_copy(update={"gt_boxes": a.gt_boxes}) for s, a in zip(duet(0.05), a_scores)]
    a, b = (
        cmp.load_folder(_duet_folder(tmp_path / "a", a_scores)),
        cmp.load_folder(_duet_folder(tmp_path / "b", b_scores)),
    )
    report = cmp.compare_pair(a, b, resamples=120, seed=5)
    paired = [i for i in range(25) if i != 7]
    deltas = {k: [] for k in (*cmp.METRICS, "matched_mean_iou")}
    for w in cmp.resample_counts(len(paired), 120, seed=5):
        for row in w:
            take = [paired[j] for j in np.repeat(np.arange(len(paired)), row.astype(int))]
            ma = summarize([a_scores[i] for i in take], duet=True)
            mb = summarize([b_scores[i] for i in take], duet=True)
            for k in deltas:
                deltas[k].append(mb[k] - ma[k])
    rows = {r["metric"]: r for r in report["metrics"]}
    assert set(rows) == set(deltas)
    full = summarize([a_scores[i] for i in paired], duet=True)
    for k, r in rows.items():
        assert r["a"] == pytest.approx(full[k])
        assert r["ci95"] == pytest.approx(list(np.percentile(deltas[k], [2.5, 97.5])), abs=1e-9)


def test_samples_that_cannot_be_replayed_make_the_replay_exit_1_naming_them(source, capsys, tmp_path):
    """A sample whose trace or media cannot be read is not written: the numbers in DST are incomplete,
    so a script must not take them as the replay's (before: a note and exit 0, even with none replayed)."""
    _, src = source
    copy = tmp_path / "src"
    shutil.copytree(src, copy)
    (copy / "traces" / "s3" / "trace.json").write_text("{")  # damaged since it was recorded
    dst = tmp_path / "d"
    code, out, err = gar(capsys, "eval", "replay", copy, "--out", dst)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("gar: error: 1 sample(s) could not be replayed (s3: trace ")
    assert "s3" not in _docs(dst) and set(_docs(dst)) == {f"s{i}" for i in (0, 1, 2, 4, 5, 6)} | {"zblack"}
    assert json.loads((dst / "replay.json").read_text())["n_unavailable"] == 1

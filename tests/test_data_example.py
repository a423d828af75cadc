"""`gar data example`: a synthetic benchmark in each benchmark's --gt format that `gar eval run` reads and scores."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gar_agent.cli.app import main
from gar_agent.data.example import write_example
from gar_agent.demo import stage
from gar_agent.eval.datasets import DATASETS


def _drawn_box(frame_path, width, height) -> list[float]:
    """The normalised box of the pixels that differ clearly from the plain stage (what is drawn)."""
    img = cv2.imread(str(frame_path)).astype(int)
    ys, xs = np.nonzero(np.abs(img - stage(width, height).astype(int)).max(axis=2) > 40)
    return [xs.min() / width, ys.min() / height, (xs.max() + 1) / width, (ys.max() + 1) / height]


@pytest.mark.parametrize("name", list(DATASETS))
def test_the_gt_file_is_the_benchmarks_format_and_boxes_what_is_drawn(name, tmp_path):
    ex = write_example(tmp_path, name, samples=4)
    samples, missing = DATASETS[name].loader(ex.gt, ex.frames, ex.audio)
    assert missing == [] and [s.id for s in samples] == ex.ids
    for s in samples:
        height, width = cv2.imread(str(s.frame)).shape[:2]
        assert len(s.gt_boxes) == DATASETS[name].sources == len(s.classes)
        # all drawn objects together span the union of the GT boxes (to a JPEG pixel or two)
        union = [min(b[0] for b in s.gt_boxes), min(b[1] for b in s.gt_boxes)]
        union += [max(b[2] for b in s.gt_boxes), max(b[3] for b in s.gt_boxes)]
        assert _drawn_box(s.frame, width, height) == pytest.approx(union, abs=3 / min(width, height))
    if name == "vggss-duet":  # the left clip's source in the left half, the right one's in the right
        assert all(s.gt_boxes[0][2] <= 0.5 <= s.gt_boxes[1][0] for s in samples)


@pytest.mark.parametrize("name", list(DATASETS))
def test_gar_eval_runs_on_it_with_its_scripted_answers(name, tmp_path, capsys):
    assert main(["data", "example", str(tmp_path / "ex"), "--benchmark", name, "--samples", "6"]) == 0
    printed = capsys.readouterr().out
    command = printed.strip().splitlines()[-1].split()  # the gar eval run command it prints
    assert command[:3] == ["gar", "eval", "run"] and "SCRIPTED" in printed
    assert main(command[1:]) == 0
    capsys.readouterr()
    out = tmp_path / "ex" / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    k = DATASETS[name].sources
    assert metrics["n_evaluated"] == 6 and metrics["n_failed"] == 0
    assert metrics["refined"] == 2 * k and metrics["skipped"] == 4 * k  # samples 2 and 5 go to Refine
    ciou = {p.stem: json.loads(p.read_text())["ciou"] for p in (out / "samples").glob("*.json")}
    ids = sorted(ciou)
    assert ciou[ids[0]] == ciou[ids[3]] == 1.0  # Generate's box exact
    assert all(0.3 < ciou[i] < 1.0 for i in (ids[1], ids[4]))  # a little off
    result = json.loads((out / "samples" / f"{ids[2]}.json").read_text())["result"]
    assert all(s["refined"] and s["box"] != s["initial_box"] for s in result["sources"])


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["data", "example", str(tmp_path), "--benchmark", "vgg"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--benchmark 'vgg': use one of vggss-single" in err
    (tmp_path / "file").write_text("x")
    assert main(["data", "example", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_its_evaluation_replays_under_no_gate_with_only_the_skipped_samples_refine_calls_new(tmp_path, capsys):
    """The README's replay example on the example benchmark: the gate-kept samples' Refine, never
    scripted before, is answered (box kept) instead of failing those samples."""
    ex = write_example(tmp_path / "ex", "music-duet", samples=6)
    src, dst = tmp_path / "eval", tmp_path / "nogate"
    run = ["eval", "run", "--dataset", "music-duet", "--frames", str(ex.frames), "--audio", str(ex.audio)]
    assert main([*run, "--gt", str(ex.gt), "--backend", f"scripted:{ex.answers}", "--out", str(src)]) == 0
    capsys.readouterr()
    assert main(["eval", "replay", str(src), "--out", str(dst), "--graph", "no_gate", "--backend", "recorded"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((dst / "metrics.json").read_text())
    assert metrics["n_failed"] == 0 and metrics["n_evaluated"] == 6, out
    # 4 gate-skipped samples x 2 sources: their Refine is the only new call; the kept boxes stay
    assert "28 reused from the recording, 8 new" in out
    before = {p.name: json.loads(p.read_text())["ciou"] for p in (src / "samples").glob("*.json")}
    after = {p.name: json.loads(p.read_text())["ciou"] for p in (dst / "samples").glob("*.json")}
    assert after == before

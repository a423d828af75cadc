"""Benchmark the research loop: replay a whole evaluation from its recorded calls, and compare two.

1. A synthetic benchmark of --samples clips (a white rectangle on black, a short tone) is evaluated
   with the scripted model (`gar eval run`, graph gar, tau_av 0.5): the recording.
2. It is replayed under each shipped graph and under a stricter tau_av, with the scripted model as
   the backend for what the recording lacks: calls reused vs new, and samples per second.
3. `gar eval compare` of two synthetic --compare-samples folders (sample files written directly):
   its wall time (target: under 2 s on 2 cores).

    python scripts/bench_eval_replay.py [--samples 1000] [--compare-samples 5000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from gar_agent.eval.compare import compare_folders
from gar_agent.eval.metrics import SampleScore
from gar_agent.eval.store import sample_document

SCRIPT = {
    "audio": [{"audio_class": "dog", "audio_confidence_score": 0.9}],
    "generate": [{"bbox": [40, 40, 180, 180], "description": "a dog in the middle"}],
    "analyze": [
        {"av_consistency": av, "keep": True, "role_tags": ["body"], "anchor_votes": [{"anchor": "head", "score": 0.8}]}
        for av in (0.7, 0.6, 0.5, 0.6, 0.6)  # mean 0.6: skipped at tau_av 0.5, refined at 0.7
    ],
    "refine": [{"bbox": [44, 44, 176, 176], "changed": True, "ops": None, "refined_description": "The dog barks."}],
}
GRAPHS = ("gar", "adaptive", "no_gate", "no_analysis", "generate_only")


def make_benchmark(root: Path, n: int, seed: int = 0) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(seed)
    frames, audio = root / "frames", root / "audio"
    frames.mkdir(parents=True)
    audio.mkdir()
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    records = []
    for i in range(n):
        sid = f"{i:05d}"
        x, y = (int(v) for v in rng.integers(0, 100, 2))
        img = np.zeros((224, 224, 3), np.uint8)
        img[y : y + 120, x : x + 120] = 255
        cv2.imwrite(str(frames / f"{sid}.jpg"), img)
        sf.write(audio / f"{sid}.wav", tone, 16000)
        records.append({"file": sid, "class": "dog", "bbox": [[x / 224, y / 224, (x + 119) / 224, (y + 119) / 224]]})
    gt = root / "gt.json"
    gt.write_text(json.dumps(records))
    return frames, audio, gt


def gar(*args: object) -> float:
    """Run `gar ...` in its own process (its output discarded); its wall time. Exit 0 or 3 only."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gar_agent", *map(str, args)], capture_output=True, text=True, env={**os.environ}
    )
    if done.returncode not in (0, 3):
        sys.exit(f"gar {' '.join(map(str, args[:3]))} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return time.perf_counter() - start


def synthetic_folder(root: Path, n: int, shift: float, seed: int) -> Path:
    """An evaluation folder of n samples written directly (random boxes near a random GT)."""
    rng = np.random.default_rng(seed)
    gt_rng = np.random.default_rng(12345)  # the same GT in every folder
    (root / "samples").mkdir(parents=True)
    config = {"format": 1, "dataset": "vggss-single", "settings": {"gt_boxes": "first", "tau_av": 0.5}, "data": {}}
    (root / "eval.json").write_text(json.dumps(config))
    for i in range(n):
        x, y = gt_rng.uniform(0, 0.5, 2)
        dx, dy = rng.uniform(-shift, shift, 2)
        score = SampleScore(
            id=f"{i:05d}",
            pred_boxes=[[x + dx, y + dy, x + dx + 0.4, y + dy + 0.4]],
            gt_boxes=[[x, y, x + 0.4, y + 0.4]],
            image_size=[640, 480],
            refined=int(rng.random() < 0.3),
            skipped=0,
        )
        score.skipped = 1 - score.refined
        doc = sample_document(score, None, 0.0, None, None, [["dog", "cat", "car"][i % 3]])
        (root / "samples" / f"{score.id}.json").write_text(json.dumps(doc, separators=(",", ":")))
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--compare-samples", type=int, default=5000)
    ap.add_argument("--keep", type=Path, help="Work in this folder (kept) instead of a temporary one.")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        frames, audio, gt = make_benchmark(root / "data", args.samples)
        script = root / "script.json"
        script.write_text(json.dumps(SCRIPT))
        backend = f"scripted:{script}"
        src = root / "src"
        data = ["--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt, "--no-vis"]
        wall = gar("eval", "run", *data, "--backend", backend, "--out", src)
        n = args.samples
        print(f"gar eval run (scripted model): {n} samples in {wall:.1f} s, {n / wall:.1f} samples/s (with start-up)")
        print(f"{'replay':<24} {'reused calls':>12} {'new calls':>10} {'samples/s':>10} {'wall s':>8}")
        cases = [(f"--graph {g}", ["--graph", g]) for g in GRAPHS] + [("--tau-av 0.7", ["--tau-av", "0.7"])]
        for label, extra in cases:
            out = root / f"replay-{label.replace('--', '').replace(' ', '-')}"
            wall = gar("eval", "replay", src, "--out", out, *extra, "--backend", backend, "--no-vis")
            rep = json.loads((out / "replay.json").read_text())
            print(f"{label:<24} {rep['reused']:>12} {rep['new']:>10} {rep['samples_per_s']:>10} {wall:>8.1f}")
        m = args.compare_samples
        a = synthetic_folder(root / "cmp-a", m, 0.15, 1)
        b = synthetic_folder(root / "cmp-b", m, 0.10, 2)
        start = time.perf_counter()
        report = compare_folders([a, b])
        in_process = time.perf_counter() - start
        wall = gar("eval", "compare", a, b, "--json")
        row = next(r for r in report["comparisons"][0]["metrics"] if r["metric"] == "ciou@0.5")
        print(
            f"gar eval compare of two {m}-sample folders (10,000 resamples): {in_process:.2f} s in process, "
            f"{wall:.2f} s as a command; cIoU@0.5 B-A {100 * row['delta']:+.1f} "
            f"[{100 * row['ci95'][0]:+.1f}, {100 * row['ci95'][1]:+.1f}]"
        )


if __name__ == "__main__":
    main()

"""Benchmark the research loop: replay a whole evaluation from its recorded calls, and compare two.

1. A synthetic benchmark of --samples clips (a white rectangle on black, a short tone) is evaluated
   with the scripted model (`gar eval run`, graph gar, tau_av 0.5): the recording.
2. It is replayed under each shipped graph and under a stricter tau_av, with the scripted model as
   the backend for what the recording lacks: calls reused vs new, and samples per second.
3. `gar eval compare` of two synthetic --compare-samples folders (sample files written directly, each
   with a run's result as `gar eval run` writes it, ~1.3 kB): CPU time (user + sys) and wall time, in
   process and as a command with its start-up (target: under 2 s on 2 cores). On a shared machine the
   wall time is the CPU time stretched by the load; the CPU time is what the command costs.

    python scripts/bench_eval_replay.py [--samples 1000] [--compare-samples 5000] [--keep DIR] [--compare-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
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
from gar_agent.result import RunResult

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


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def gar_timed(*args: object) -> tuple[float, float]:
    """Run `gar ...` in its own process (its output discarded): (wall s, CPU s user + sys). Exit 0 or 3 only."""
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gar_agent", *map(str, args)], capture_output=True, text=True, env={**os.environ}
    )
    wall = time.perf_counter() - start
    if done.returncode not in (0, 3):
        sys.exit(f"gar {' '.join(map(str, args[:3]))} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return wall, _children_cpu() - cpu


def gar(*args: object) -> float:
    """Run `gar ...` in its own process (its output discarded); its wall time."""
    return gar_timed(*args)[0]


def _result(sid: str, box: list[float], refined: bool) -> RunResult:
    """A run's result as the scripted model's `gar eval run` writes it (so sample files have a real size)."""
    px = [round(v * 224) for v in box]
    return RunResult.model_validate(
        {
            "image": {"path": f"data/frames/{sid}.jpg", "width": 640, "height": 480},
            "audio": {"path": f"data/audio/{sid}.wav", "sample_rate": 16000, "duration_s": 10.0},
            "settings": {"sources": 1, "n_votes": 5, "votes_per_call": 5, "tau_av": 0.5, "tau_audio": 0.75,
                         "graph": "gar", "backend": "scripted:script.json", "protocol": "gar"},
            "sources": [{
                "box": px, "initial_box": px, "description": "a dog in the middle", "audio_class": "dog",
                "audio_confidence": 0.9,
                "analysis": {"av_consistency": 0.6, "keep": True, "role_tags": ["body"],
                             "anchor_votes": [{"anchor": "head", "score": 0.8}], "n_votes": 5, "n_parsed": 5},
                "gate": {"refine": refined, "reasons": ["av_consistency 0.6 < tau_av"] if refined else []},
                "refined": refined, "refined_description": "The dog barks." if refined else None,
                "status": "refined" if refined else "skipped",
            }],
            "usage": {"model_calls": 3 + refined, "input_tokens": 1376, "output_tokens": 169, "wall_s": 2.5},
        }
    )  # fmt: skip


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
        result = _result(score.id, score.pred_boxes[0], bool(score.refined))
        doc = sample_document(score, result, 2.5, f"traces/{score.id}.json", None, [["dog", "cat", "car"][i % 3]])
        (root / "samples" / f"{score.id}.json").write_text(json.dumps(doc, separators=(",", ":")))
    return root


def bench_compare(root: Path, m: int, runs: int = 3) -> None:
    """`gar eval compare` of two m-sample folders: CPU and wall time in process and as a command."""
    a, b = root / "cmp-a", root / "cmp-b"
    if not all((f / "eval.json").exists() and len(os.listdir(f / "samples")) == m for f in (a, b)):
        for folder in (a, b):
            if folder.exists():
                shutil.rmtree(folder)
        synthetic_folder(a, m, 0.15, 1)
        synthetic_folder(b, m, 0.10, 2)
    cpu, start = _own_cpu(), time.perf_counter()
    report = compare_folders([a, b])
    in_cpu, in_wall = _own_cpu() - cpu, time.perf_counter() - start
    walls, cpus = zip(*(gar_timed("eval", "compare", a, b, "--json") for _ in range(runs)))
    row = next(r for r in report["comparisons"][0]["metrics"] if r["metric"] == "ciou@0.5")
    load = os.getloadavg()[0]
    print(
        f"gar eval compare of two {m}-sample folders (10,000 resamples), CPU (user+sys) / wall s: "
        f"in process {in_cpu:.2f} / {in_wall:.2f}; as a command (start-up included, median of {runs}) "
        f"{statistics.median(cpus):.2f} / {statistics.median(walls):.2f} (CPU {min(cpus):.2f}-{max(cpus):.2f}); "
        f"load average {load:.1f} on {os.cpu_count()} CPUs; cIoU@0.5 B-A {100 * row['delta']:+.1f} "
        f"[{100 * row['ci95'][0]:+.1f}, {100 * row['ci95'][1]:+.1f}]"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--compare-samples", type=int, default=5000)
    ap.add_argument("--keep", type=Path, help="Work in this folder (kept) instead of a temporary one.")
    ap.add_argument(
        "--compare-only", action="store_true", help="Only the comparison (with --keep: its folders are reused)."
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if args.compare_only:
            bench_compare(root, args.compare_samples)
            return
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
        bench_compare(root, args.compare_samples)


if __name__ == "__main__":
    main()

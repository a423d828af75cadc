"""Benchmark `gar track`'s own costs (no model): cutting clips, following boxes, rendering, reuse.

Makes a video (a red square moving over a gradient, a tone that changes half-way), then prints:
probe time (with the sha256 of the file), frame + audio window extraction per analysed time, the
trackers' time per frame and how closely they follow the square, and whole `gar track` runs with a
scripted model (so the figures are ours, not a model's) with --reuse and --no-reuse: wall time,
model calls, rendering speed.

    python scripts/bench_track.py [--width 640 --height 360 --fps 30 --seconds 20 --every 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from gar_agent.cli.app import main
from gar_agent.video.analyse import iou
from gar_agent.video.clip import cut_clip
from gar_agent.video.decode import probe
from gar_agent.video.follow import TRACKERS, Anchor, Follower


def square(i: int, w: int, h: int) -> list[int]:
    side = max(8, h // 5)
    x = round((w - side - 20) * (i % 600) / 600) + 10
    return [x, h // 3, x + side, h // 3 + side]


def frame(i: int, w: int, h: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    x1, y1, x2, y2 = square(i, w, h)
    img[y1:y2, x1:x2] = (255, 0, 0)
    return img


def make_video(path: Path, w: int, h: int, fps: int, seconds: float, rate: int = 44_100) -> None:
    c = av.open(str(path), "w")
    vs = c.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.options = {"preset": "ultrafast"}
    a = c.add_stream("aac", rate=rate)
    a.layout = "stereo"
    for i in range(round(seconds * fps)):
        f = av.VideoFrame.from_ndarray(frame(i, w, h), format="rgb24")
        f.pts = i
        c.mux(vs.encode(f))
    c.mux(vs.encode())
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.4 * np.where(t < seconds / 2, np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t))).astype(
        np.float32
    )
    for s in range(0, wave.size, 4096):
        chunk = np.ascontiguousarray(np.stack([wave[s : s + 4096]] * 2))
        af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        af.sample_rate, af.pts = rate, s
        c.mux(a.encode(af))
    c.mux(a.encode())
    c.close()


def main_bench() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--every", type=float, default=2.0)
    p.add_argument("--track-frames", type=int, default=60, help="frames followed per tracker")
    args = p.parse_args()
    w, h = args.width, args.height
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        video = d / "bench.mp4"
        t0 = time.perf_counter()
        make_video(video, w, h, args.fps, args.seconds)
        print(f"video: {w}x{h}, {args.fps} fps, {args.seconds:g} s, {video.stat().st_size / 1e6:.1f} MB "
              f"(made in {time.perf_counter() - t0:.1f} s)")  # fmt: skip

        t0 = time.perf_counter()
        info = probe(video)
        print(f"probe (incl. sha256): {1000 * (time.perf_counter() - t0):.1f} ms")

        cuts = []
        for k, at in enumerate(np.linspace(0, info.duration_s, 6)):
            t0 = time.perf_counter()
            cut_clip(info, float(at), 3.0, d / "clips", stem=f"{k}-")
            cuts.append(time.perf_counter() - t0)
        print(f"frame + 3 s audio window per analysed time: median {1000 * statistics.median(cuts):.1f} ms "
              f"(max {1000 * max(cuts):.1f} ms, {len(cuts)} times across the video)")  # fmt: skip

        for name in TRACKERS:
            f = Follower(w, h, name)
            f.anchor(frame(0, w, h), Anchor(0.0, [{"source": 0, "audio_class": "beep", "box": square(0, w, h)}]), None)
            ious, t0 = [], time.perf_counter()
            for i in range(1, args.track_frames + 1):
                (b,) = f.step(frame(i, w, h), i / args.fps)
                ious.append(iou(b["box"], square(i, w, h)) if b["origin"] == "tracker" else 0.0)
            per = 1000 * (time.perf_counter() - t0) / args.track_frames
            print(f"tracker {name:8s}: {per:.1f} ms/frame, IoU with the square: mean {np.mean(ious):.2f}, "
                  f"min {min(ious):.2f} over {args.track_frames} frames")  # fmt: skip

        script = d / "script.json"
        script.write_text(
            json.dumps(
                {
                    "audio": ['{"audio_class": "beep", "audio_confidence_score": 0.9}'],
                    "generate": [json.dumps({"bbox": square(0, w, h), "description": "a red square"})],
                    "analyze": [{"av_consistency": 0.8, "keep": True, "role_tags": [], "anchor_votes": []}],
                    "refine": ['{"changed": false}'],
                }
            )
        )
        n_frames = round(args.seconds * args.fps)
        for mode in ("--reuse", "--no-reuse"):
            out = d / mode
            t0 = time.perf_counter()
            code = main(["track", str(video), "--every", str(args.every), "--out", str(out), mode,
                         "--backend", f"scripted:{script}"])  # fmt: skip
            wall = time.perf_counter() - t0
            timeline = json.loads((out / "timeline.json").read_text())
            calls = sum(e["usage"]["model_calls"] for e in timeline["times"])
            s = timeline["summary"]
            print(f"gar track {mode:10s}: exit {code}, {wall:.1f} s wall, {s['times']} times "
                  f"({s['analysed']} analysed, {s['reused']} reused), {calls} model calls, "
                  f"{n_frames / wall:.0f} frames/s overall, boxes {s['boxes_by_origin']}")  # fmt: skip


if __name__ == "__main__":
    main_bench()

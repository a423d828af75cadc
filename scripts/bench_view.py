"""How fast `gar view` opens a big evaluation folder: prints seconds per view, cold and warm.

Builds an evaluation folder of N samples (default 5,000) from one real scripted `gar eval` sample,
copied under N ids with varied cIoU, then serves it with the real server (uvicorn, HTTP on
127.0.0.1) and times what the page fetches to show each view: the evaluation page (eval + first
page of samples), a filtered/sorted samples page, the runs list (first page of traces) and one run.
With --browser it also times Chromium from navigation to the samples table drawn.

    python scripts/bench_view.py                    # 5,000 samples in a temporary folder
    python scripts/bench_view.py --samples 20000 --keep /tmp/big-eval --browser

The target: the runs list of a 5,000-sample evaluation opens in under 2 s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the scripted test model and benchmark maker of the suite


def make_seed(work: Path) -> Path:
    """One real `gar eval` folder of one sample (the test suite's RectModel answers)."""
    from benchmarks import BACKEND, make_benchmark, norm

    from gar_agent.cli.app import main

    frames, audio, gt = make_benchmark(
        work, "vggss-single", [{"id": "seed", "drawn": [[56, 56, 167, 167]], "gt": [norm([40, 40, 150, 150])]}]
    )
    t = np.arange(8000) / 16000
    sf.write(audio / "seed.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    out = work / "seed-eval"
    args = ["eval", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt]
    code = main([str(a) for a in [*args, "--backend", BACKEND, "--out", out]])
    assert code == 0, "the seed evaluation failed"
    return out


def make_big(seed: Path, out: Path, n: int) -> None:
    """N samples copied from the seed, each with its own id, trace and a random cIoU."""
    rng = random.Random(0)
    sample = json.loads((seed / "samples" / "seed.json").read_text())
    trace = json.loads((seed / "traces" / "seed" / "trace.json").read_text())
    (out / "samples").mkdir(parents=True)
    for name in ("eval.json", "metrics.json"):
        shutil.copy(seed / name, out / name)
    (out / "vis").mkdir()
    vis = (seed / "vis" / "seed.jpg").read_bytes()
    for i in range(n):
        sid = f"s{i:06d}"
        doc = json.loads(json.dumps(sample))
        failed = rng.random() < 0.05
        doc.update(id=sid, trace=f"traces/{sid}/trace.json", vis=f"vis/{sid}.jpg")
        doc["ciou"] = None if failed else round(rng.random(), 4)
        doc["score"].update(id=sid, failed=failed, refined=int(rng.random() < 0.3))
        (out / "samples" / f"{sid}.json").write_text(json.dumps(doc, indent=1))
        folder = out / "traces" / sid
        folder.mkdir(parents=True)
        (folder / "trace.json").write_text(json.dumps({**trace, "run_id": sid}))
        (out / "vis" / f"{sid}.jpg").write_bytes(vis)


def serve(folder: Path):
    """The real server in a thread; returns (url, stop)."""
    import uvicorn

    from gar_agent.view.index import Folder
    from gar_agent.view.server import create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    # warm=False: measure a first visit that finds nothing indexed (the background indexer would
    # otherwise compete for the same two cores while we time)
    server = uvicorn.Server(uvicorn.Config(create_app(Folder.open(folder), warm=False), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def stop():
        server.should_exit = True
        thread.join(10)

    return f"http://127.0.0.1:{sock.getsockname()[1]}/", stop


def timed(url: str, paths: list[str]) -> float:
    """Seconds to fetch these URLs one after the other (as the page does)."""
    start = time.perf_counter()
    for p in paths:
        with urllib.request.urlopen(url + p, timeout=120) as r:
            r.read()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--keep", type=Path, help="Build (or reuse) the folder here instead of a temporary one.")
    ap.add_argument("--browser", action="store_true", help="Also time Chromium drawing the evaluation page.")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-view-"))
    folder = args.keep or work / "eval"
    if not (folder / "samples").is_dir():
        t0 = time.perf_counter()
        # the seed's frame and audio stay beside a kept folder: its runs refer to them
        seed_dir = folder.parent / f"{folder.name}-seed" if args.keep else work / "seed"
        make_big(make_seed(seed_dir), folder, args.samples)
        print(f"built {args.samples} samples in {folder} ({time.perf_counter() - t0:.1f} s)")
    n = len(list((folder / "samples").glob("*.json")))
    url, stop = serve(folder)
    try:
        eval_page = ["", "api/info", "api/eval", "api/samples?limit=100"]
        rows = [
            ("evaluation page (cold: every sample file read)", eval_page),
            ("evaluation page (warm)", eval_page),
            (
                "samples: refined, cIoU >= 0.5, sorted by cIoU desc",
                ["api/samples?status=refined&iou_min=0.5&sort=ciou&desc=1"],
            ),
            ("runs list, first page of 100 traces (cold)", ["api/runs?limit=100"]),
            ("runs list, first page (warm)", ["api/runs?limit=100"]),
            ("runs list, page 25 (cold)", ["api/runs?limit=100&offset=2400"]),
            ("one run (trace + waveform)", ["api/run?ref=traces/s000042", "api/waveform?ref=traces/s000042"]),
        ]
        print(f"gar view over {n} samples ({folder})")
        for label, paths in rows:
            print(f"  {label:55s} {timed(url, paths):7.3f} s")
        if args.browser:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--disable-dev-shm-usage"])
                page = browser.new_page()
                for what, hash_ in (("evaluation page", ""), ("runs list", "#/runs")):
                    start = time.perf_counter()
                    page.goto(url + hash_)
                    page.wait_for_selector("[data-testid=samples]" if not hash_ else "[data-testid=runs]")
                    print(f"  {'browser: ' + what + ' drawn':55s} {time.perf_counter() - start:7.3f} s")
                browser.close()
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

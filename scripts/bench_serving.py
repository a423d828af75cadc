"""Throughput of `gar eval --backend openai` against W samples in flight.

Starts the chat-completions stub (tests/openai_stub.py) in its own process with a fixed latency
per request and unlimited parallelism, generates single-source clips, and runs `gar eval`
in this process at each W. Prints samples/s beside the ideal, W / (latency x sequential calls per
sample), and their ratio: what the client loses to its own CPU cost. `gar eval` picks its number
of processes as usual (one per 16 samples in flight, at most one per CPU) unless --processes is given.

    python scripts/bench_serving.py                          # W = 1 4 16 64 256, 200 ms a request
    python scripts/bench_serving.py --workers 64 --processes 1 --rounds 16
    python scripts/bench_serving.py --workers 64 --latency 0.1
    python scripts/bench_serving.py --base-url http://gpu-node:8000/v1 --model Qwen/Qwen2.5-Omni-7B

With --base-url the clips go to that server (e.g. vLLM) instead and no ideal is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openai_stub import make_samples  # noqa: E402

from gar_agent.cli.app import main as gar  # noqa: E402


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (gar eval --processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def stub_process(latency: float):
    """The stub in its own process (off this one's GIL); yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "openai_stub.py"), "--port", str(port), "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit(f"the stub did not start (printed {url!r})")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_eval(
    data: tuple[Path, Path, Path],
    out: Path,
    url: str,
    model: str,
    workers: int,
    limit: int,
    processes: int | None = None,
) -> float:
    """Run gar eval quietly; seconds it took."""
    frames, audio, gt = data
    args = ["eval", "--dataset", "vggss-single", "--frames", frames, "--audio", audio, "--gt", gt, "--out", out]
    args += ["--backend", "openai", "--base-url", url, "--model", model, "--no-vis"]
    args += ["--workers", workers, "--limit", limit] + (["--processes", processes] if processes else [])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = gar([str(a) for a in args])
    took = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"gar eval exited {code} at W={workers}")
    return took


def calls_per_sample(out: Path) -> float:
    """Mean model calls per sample of a finished folder (all sequential for one source)."""
    calls = [json.loads(p.read_text())["result"]["usage"]["model_calls"] for p in (out / "samples").glob("*.json")]
    return sum(calls) / len(calls)


def main() -> None:
    """Run the sweep over W and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--latency", type=float, default=0.2, help="stub seconds per request")
    parser.add_argument("--rounds", type=int, default=4, help="samples per run = max(--min-samples, rounds x W)")
    parser.add_argument("--min-samples", type=int, default=40)
    parser.add_argument("--base-url", help="measure this server instead of the stub")
    parser.add_argument("--model", default="stub-model")
    parser.add_argument(
        "--processes", type=int, help="gar eval --processes (W in flight in all; default: gar's own choice)"
    )
    args = parser.parse_args()

    counts = {w: max(args.min_samples, args.rounds * w) for w in args.workers}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        root = Path(tmp)
        data = make_samples(root / "data", max(counts.values()))
        with contextlib.ExitStack() as stack:
            url = args.base_url or stack.enter_context(stub_process(args.latency))
            run_eval(data, root / "warm", url, args.model, 2, 4)  # imports, first connections
            where = url if args.base_url else f"stub, {args.latency * 1000:.0f} ms a request, unlimited parallelism"
            procs = f"--processes {args.processes}" if args.processes else "processes as gar eval picks them"
            print(f"gar eval --backend openai · {where} · {os.cpu_count()} CPUs · {procs}")
            head = f"{'W':>5} {'samples':>8} {'wall s':>8} {'samples/s':>10} {'CPU ms/sample':>14}"
            print(head + ("" if args.base_url else f" {'ideal':>8} {'ratio':>6}"))
            for w in args.workers:
                out = root / f"w{w}"
                cpu = _cpu()
                took = run_eval(data, out, url, args.model, w, counts[w], args.processes)
                cpu_ms = (_cpu() - cpu) / counts[w] * 1000
                rate = counts[w] / took
                line = f"{w:>5} {counts[w]:>8} {took:>8.2f} {rate:>10.2f} {cpu_ms:>14.1f}"
                if not args.base_url:
                    ideal = w / (args.latency * calls_per_sample(out))
                    line += f" {ideal:>8.2f} {rate / ideal:>6.0%}"
                print(line, flush=True)


if __name__ == "__main__":
    main()

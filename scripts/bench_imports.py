"""How long `gar` takes to start: wall time of `gar --help`, `gar trace list` and `gar eval --help`
(fresh processes, median of --repeat), and the heaviest imports of `gar --help` (python -X importtime).

    python scripts/bench_imports.py                  # this checkout
    python scripts/bench_imports.py --repo ../other  # another checkout, to compare (e.g. before a change)

The commands run as `python -m gar_agent ...` with PYTHONPATH set to the checkout, in the Python
running this script. `gar trace list` lists a folder holding one demo trace, made first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gar(*args: str) -> list[str]:
    return [sys.executable, "-m", "gar_agent", *args]


def timed(cmd: list[str], env: dict, repeat: int) -> str:
    """Median wall and CPU (user + system) seconds of fresh runs: on a shared machine the wall time
    waits for a core, the CPU time is what the command costs."""
    wall, cpu = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        # run in the checkout: `python -m` puts the working directory first on sys.path
        subprocess.run(cmd, env=env, cwd=env["PYTHONPATH"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return f"{statistics.median(wall):6.2f} s wall {statistics.median(cpu):6.2f} s cpu"


def heaviest_imports(env: dict, top: int) -> list[tuple[float, str]]:
    """The modules `gar --help` imports at the first two levels, by cumulative import time (s)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from gar_agent.cli.app import main; main(['--help'])"],
        env=env,
        cwd=env["PYTHONPATH"],
        capture_output=True,
        text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("    "):
            rows.append((int(parts[1]) / 1e6, parts[2].rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="The checkout to measure.")
    parser.add_argument("--repeat", type=int, default=5, help="Runs per command (the median is shown).")
    args = parser.parse_args()
    repo = args.repo.resolve()
    env = {**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "120"}
    with tempfile.TemporaryDirectory() as tmp:
        traces = Path(tmp) / "traces"
        subprocess.run(
            gar("demo", "--out", f"{tmp}/demo", "--trace-dir", str(traces), "--json"),
            env=env,
            cwd=repo,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        print(f"{repo} · python {sys.version.split()[0]} · median of {args.repeat} fresh processes")
        print(f"  {'python -c pass':<28} {timed([sys.executable, '-c', 'pass'], env, args.repeat)}")
        for label, cmd in (
            ("gar --help", gar("--help")),
            ("gar trace list (1 run)", gar("trace", "list", str(traces))),
            ("gar eval --help", gar("eval", "--help")),
        ):
            print(f"  {label:<28} {timed(cmd, env, args.repeat)}")
    print("heaviest imports of gar --help (cumulative, one run):")
    for seconds, name in heaviest_imports(env, 8):
        print(f"  {name:<28} {seconds:6.3f} s")


if __name__ == "__main__":
    main()

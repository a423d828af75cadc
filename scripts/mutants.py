"""Mutation check of the method's rules and the metrics: each mutant must make a test fail.

python scripts/mutants.py  prints, per mutant (a flipped comparison, a dropped sort, a changed
rounding, ...), whether tests/test_metrics.py and tests/test_rules.py kill it. The files
are restored after each mutant, also on Ctrl-C.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_metrics.py", "tests/test_rules.py"]
RULES, METRICS = "gar_agent/rules.py", "gar_agent/eval/metrics.py"
MUTANTS = [
    (RULES, "max(4, int(round(0.08 * min(width, height))))", "max(4, int(0.08 * min(width, height)))"),
    (RULES, "return out, any(o != c", "return out, not any(o != c"),
    (RULES, "anchors.sort(key=lambda a: -a.score)", "pass"),
    (RULES, "keep = sum(p.keep for p in parsed) >= n // 2 + 1", "keep = sum(p.keep for p in parsed) >= n // 2"),
    (RULES, "if not analysis.av_consistency >= settings.tau_av:", "if not analysis.av_consistency > settings.tau_av:"),
    (RULES, "cx, cy = (ops.target or [(x1 + x2) / 2, (y1 + y2) / 2])[:2]", "cx, cy = (ops.target or [x1, y1])[:2]"),
    (METRICS, "return float(np.mean(arr >= t))", "return float(np.mean(arr > t))"),
    (METRICS, "return bool(np.all((p == 0) | (p == 1)))", "return bool(np.any((p == 0) | (p == 1)))"),
    (METRICS, "return bool(np.all((p == 0) | (p == 1)))", "return not bool(np.all((p == 0) | (p == 1)))"),
    (METRICS, "minlength=scores.size) - pos", "minlength=scores.size)"),
    (METRICS, "return inter / union if union > 0 else 0.0", "return inter / union if union >= 0 else 0.0"),
    (METRICS, "if width <= 0 or height <= 0:", "if width < 0 or height < 0:"),
    (RULES, "        x2 = min(x1 + 1, width - 1)", "        x2 = min(x1 + 2, width - 1)"),
    (METRICS, "valid = [m for m in matched if not math.isnan(m)]", "valid = matched"),
    (METRICS, "px = gar_clip_box([round(v * side)", "px = gar_clip_box([int(v * side)"),
    (METRICS, "[round(v * (size / side))", "[int(v * (size / side))"),
    (METRICS, "round(round(v * size, 9))", "round(round(v * size, 6))"),
    (METRICS, "round(round(v * size, 9))", "round(round(v * size, 12))"),
    (METRICS, "if width <= 0 or height <= 0:", "if width <= 1 or height <= 0:"),
    (METRICS, "if len(vals) != 4 or not all(", "if len(vals) != 4 and not all("),
    (METRICS, "if len(vals) != 4 or not all(math.isfinite(v) for v in vals):", "if len(vals) != 4:"),
    (METRICS, "/ den) if den > 0 else 0.0", "/ den) if den > 1 else 0.0"),
    (METRICS, "keys = sorted(self.pos)", "keys = list(self.pos)"),
    (METRICS, "    if not gt_boxes:\n", "    if False:\n"),
    (METRICS, "return None if not used or math.isnan(x)", "return None if not used and math.isnan(x)"),
]


def killed(path: str, old: str, new: str) -> bool:
    """Apply one mutant, run the tests, restore the file; True when a test failed."""
    file = ROOT / path
    original = file.read_text()
    if original.count(old) != 1:  # exactly one site, not a docstring mentioning it
        raise SystemExit(f"mutant not applicable (source changed?): {path}: {old!r}")
    try:
        file.write_text(original.replace(old, new, 1))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                              cwd=ROOT, capture_output=True)  # fmt: skip
        return proc.returncode != 0
    finally:
        file.write_text(original)


def main() -> int:
    survivors = 0
    for path, old, new in MUTANTS:
        dead = killed(path, old, new)
        survivors += not dead
        print(f"{'killed  ' if dead else 'SURVIVED'} {path}: {old!r} -> {new!r}", flush=True)
    print(f"{len(MUTANTS) - survivors} of {len(MUTANTS)} mutants killed")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

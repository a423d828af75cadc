"""What `gar replay` and `gar fork` say about a re-run: its parent and what changed before it, how its
final boxes differ after it, and the command that compares the two runs in full."""

from __future__ import annotations

import shlex
from pathlib import Path

from gar_agent.result import RunResult
from gar_agent.rules import box_iou  # a rule, without the metrics' scipy and sklearn
from gar_agent.trace.schema import Trace
from gar_agent.trace.store import TRACE_FILE


def parent_trace_dir(trace: Trace, path: Path) -> Path:
    """The trace directory the parent was saved in: a re-run's trace goes beside it, not to traces/.

    A run is saved as DIR/<run id>/trace.json, so DIR; a trace file kept elsewhere: its folder.
    """
    if path.name == TRACE_FILE and path.parent.name == trace.run_id:
        return path.parent.parent
    return path.parent


def replay_changes(trace: Trace, **given) -> list[str]:
    """The settings a replay changes, as `name old -> new` (a value equal to the recorded one is no change)."""
    recorded = trace.settings.model_dump()
    return [f"{k} {recorded[k]:g} -> {v:g}" for k, v in given.items() if v is not None and v != recorded[k]]


def fork_edits(trace: Trace, boxes: dict[int, list[int]], votes: list[tuple[int, int, str]]) -> list[str]:
    """A fork's edits, each with what it replaces."""
    gave = {s.index: s.initial_box for s in trace.final_state.sources}
    out = [f"source {i} initial box {gave.get(i, '?')} -> {box}" for i, box in boxes.items()]
    return out + [f"source {i} vote {n} answer -> {answer}" for i, n, answer in votes]


def rerun_header(kind: str, trace: Trace, path: Path, changes: list[str]) -> str:
    """`replay of run ID (PATH) · changed: ...` (or that nothing changed)."""
    where = "after generate " if kind == "fork" else ""
    what = ("changed: " if kind == "replay" else "edits: ") + "; ".join(changes) if changes else "nothing changed"
    return f"{kind} of run {trace.run_id} ({path}) {where}· {what}"


def rerun_closing(parent: Trace, parent_path: Path, result: RunResult, child_path: Path | None) -> list[str]:
    """The final boxes against the parent's ("unchanged", or each change with its IoU), and the diff command."""
    before = {i: s.box for i, s in enumerate(parent.result.sources)}
    after = {i: s.box for i, s in enumerate(result.sources)}
    changed = [i for i in sorted(set(before) | set(after)) if before.get(i) != after.get(i)]
    if not changed:
        lines = [f"final boxes unchanged from run {parent.run_id}"]
    else:
        parts = []
        for i in changed:
            a, b = before.get(i), after.get(i)
            iou = f" (IoU {box_iou(a, b, size=None):.3f} with the parent's)" if a and b else ""
            parts.append(f"source {i} {a or 'none'} -> {b or 'none'}{iou}")
        lines = [f"final boxes changed from run {parent.run_id}: " + "; ".join(parts)]
    if child_path is not None:
        lines.append(f"compare: gar trace diff {shlex.quote(str(parent_path))} {shlex.quote(str(child_path))}")
    return lines

"""Scoring an evaluation folder: a run's result as a SampleScore, and metrics.json from the sample files.

Metrics are always computed from the stored sample files (in id order), never accumulated while
running, so a resumed run, an uninterrupted one and a rescore give identical numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gar_agent.eval.datasets import DATASETS
from gar_agent.eval.metrics import SampleScore, normalize_box, summarize
from gar_agent.eval.store import EvalDir, failure_kind, load_scores, read_config, recorded_missing
from gar_agent.result import RunResult
from gar_agent.trace.store import atomic_write


def score_result(
    sid: str, gt_boxes: list[list[float]], result: RunResult | None, error: str | None = None
) -> SampleScore:
    """The SampleScore of a run's result document (None: the sample never ran, e.g. bad media)."""
    if result is None:
        return SampleScore(id=sid, failed=True, error=error, gt_boxes=gt_boxes)
    w, h = result.image.width, result.image.height
    return SampleScore(
        id=sid,
        failed=result.error is not None,
        error=result.error,
        pred_boxes=[normalize_box(s.box, w, h) for s in result.sources],
        gt_boxes=gt_boxes,
        image_size=[w, h],
        refined=result.refined,
        skipped=result.skipped,  # a graph without a gate skips none
    )


def metrics_document(
    scores: Sequence[SampleScore],
    config: dict,
    strict: bool = False,
    missing: Sequence[str] = (),
    gt_boxes: str | None = None,
) -> dict:
    """metrics.json: summarize() of the records (in id order) plus what produced them."""
    duet = DATASETS[config["dataset"]].sources > 1
    ordered = sorted(scores, key=lambda s: s.id)  # the same order in a run and a rescore: same floats
    failed = [{"id": s.id, "error": s.error, "kind": failure_kind(s.error)} for s in ordered if s.failed]
    return {
        **summarize(ordered, duet=duet, strict=strict),
        "dataset": config["dataset"],
        "strict": strict,
        "gt_boxes": gt_boxes or config["settings"].get("gt_boxes"),
        "settings": config["settings"],
        "n_missing": len(missing),
        "missing": list(missing),
        "failed": failed,
        # failures that are not the method's outcome: a frame or audio file that could not be used,
        # or our own code raising (each with its traceback in its sample file); `gar eval` exits 1 on them
        "n_input_errors": sum(f["kind"] == "input" for f in failed),
        "n_internal_errors": sum(f["kind"] == "internal" for f in failed),
    }


def write_metrics(d: EvalDir, doc: dict) -> Path:
    """Write metrics.json atomically."""
    atomic_write(d.metrics, json.dumps(doc, indent=1) + "\n")
    return d.metrics


@dataclass
class Rescored:
    """A rescore: the metrics and which stored files could not be used."""

    metrics: dict
    unreadable: list[str] = field(default_factory=list)
    no_gt: list[str] = field(default_factory=list)


def rescore(
    d: EvalDir,
    strict: bool = False,
    gt: dict[str, list[list[float]]] | None = None,
    gt_boxes: str | None = None,
) -> Rescored:
    """Recompute metrics.json from the stored sample files (no model, no media).

    `gt` (id -> normalised xyxy boxes, e.g. re-read with --gt-boxes union) replaces the stored GT
    boxes; samples it lacks are left out and listed. The missing ids of the previous metrics.json
    are carried over (they depend on the data folders, which a rescore does not read).
    """
    config = read_config(d)
    scores, unreadable = load_scores(d)
    no_gt: list[str] = []
    if gt is not None:
        no_gt = [s.id for s in scores if s.id not in gt]
        scores = [s.model_copy(update={"gt_boxes": gt[s.id]}) for s in scores if s.id in gt]
    doc = metrics_document(scores, config, strict, recorded_missing(d), gt_boxes)
    write_metrics(d, doc)
    return Rescored(doc, unreadable, no_gt)

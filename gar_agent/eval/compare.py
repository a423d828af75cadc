"""Compare evaluation folders: paired bootstrap intervals, McNemar on the hits, what changed per sample.

Every benchmark number of `summarize` is a function of per-sample contributions: cIoU@t and AUC are
means of per-sample values (AUC's trapezoid is linear in the success rates), AP is a mean, PIAP is
the AP of pooled pixel counts (true positives, predicted and GT pixels summed over samples), and the
duet's matched IoU a mean over the samples that have one. So a bootstrap resample is a vector of
counts (how often each paired sample was drawn) and every metric of every resample is a matrix
product: 10,000 resamples of 5,000 samples are ~400 small products (~0.35 s of CPU, most of it drawing
the 50 million indices), not 10,000 summaries.

Only samples evaluated in both folders are paired (with `strict`, failed samples count as misses
and are evaluated; otherwise they are left out, as in metrics.json).
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from gar_agent.errors import UserError
from gar_agent.eval.datasets import DATASETS
from gar_agent.eval.metrics import MASK_SIZE, THRESHOLDS, SampleScore, matched_ious
from gar_agent.eval.store import SAMPLE_READ_ERRORS, EvalDir, parse_sample, read_config
from gar_agent.hashing import file_sha256

PIXELS = MASK_SIZE * MASK_SIZE
# AUC's per-sample contribution: the trapezoid weight of each threshold the sample's cIoU reaches
_AUC_WEIGHTS = np.concatenate([[0.0], np.diff(THRESHOLDS)]) / 2 + np.concatenate([np.diff(THRESHOLDS), [0.0]]) / 2
METRICS = ("ciou@0.3", "ciou@0.5", "auc", "ap", "piap")
CHUNK_CELLS = 1 << 17  # bootstrap draws per matrix product (resamples x samples): 1 MiB of int64 indices


class CompareError(UserError):
    """Folders that cannot be compared (other benchmark, other GT); the message is one line."""


@dataclass
class Folder:
    """One evaluation folder's samples as per-sample arrays, in id order."""

    root: Path
    config: dict
    ids: list[str]
    failed: np.ndarray  # bool
    tp: np.ndarray  # GT pixels the prediction covers (224 x 224 grid)
    on: np.ndarray  # predicted pixels
    pos: np.ndarray  # GT pixels
    matched: np.ndarray  # duet: mean matched IoU (nan: none)
    gate: list[str]
    classes: list[str]
    gt: list[list[list[float]]]

    @property
    def ciou(self) -> np.ndarray:
        den = self.pos + self.on - self.tp
        return np.divide(self.tp, den, out=np.zeros(len(self.ids)), where=den > 0)


def _gate(score: SampleScore) -> str:
    if score.failed:
        return "failed"
    if score.refined and score.skipped:
        return "mixed"
    return "refined" if score.refined else "skipped" if score.skipped else "no gate"


def load_folder(path: str | Path, duet: bool | None = None) -> Folder:
    """Read a folder's config and sample files (unreadable ones are left out)."""
    d = EvalDir(Path(path))
    config = read_config(d)
    duet = DATASETS[config["dataset"]].sources > 1 if duet is None else duet
    rows = _read_samples(d)
    n = len(rows)
    f = Folder(d.root, config, [], np.zeros(n, bool), np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n), [], [], [])
    f.matched[:] = np.nan
    fast = []  # one GT box, at most one prediction, the image size known: counted as rectangles, all at once
    for i, (sid, s, classes) in enumerate(rows):
        f.ids.append(sid)
        f.failed[i] = s.failed
        f.gate.append(_gate(s))
        f.classes.append("+".join(map(str, classes)) if isinstance(classes, list) and classes else "-")
        f.gt.append(s.gt_boxes)
        if duet:
            f.matched[i] = matched_ious([] if s.failed else s.pred_boxes, s.gt_boxes, MASK_SIZE, s.image_size)[1]
        pred = [] if s.failed else s.pred_boxes
        boxes = [*s.gt_boxes, *pred]
        if not all(len(b) == 4 and all(map(math.isfinite, b)) for b in boxes):
            f.on[i] = -1  # a box that is no box: the sample is left out, as an unreadable file is
            continue
        if len(s.gt_boxes) == 1 and len(pred) <= 1 and s.image_size and min(s.image_size) > 0:
            fast.append((i, s.gt_boxes[0], pred[0] if pred else None, s.image_size))
            continue
        gt, mask = s.masks()
        g, p = gt > 0.5, mask >= 0.5
        f.tp[i], f.on[i], f.pos[i] = np.count_nonzero(g & p), np.count_nonzero(p), np.count_nonzero(g)
    if fast:
        _rectangles(f, fast)
    return _without(f, f.on < 0)


def _without(f: Folder, drop: np.ndarray) -> Folder:
    """The folder without the samples marked in `drop`."""
    if not drop.any():
        return f
    keep = ~drop
    pick = np.flatnonzero(keep)
    return Folder(
        f.root, f.config, [f.ids[i] for i in pick], f.failed[keep], f.tp[keep], f.on[keep], f.pos[keep],
        f.matched[keep], [f.gate[i] for i in pick], [f.classes[i] for i in pick], [f.gt[i] for i in pick],
    )  # fmt: skip


def _read_samples(d: EvalDir) -> list[tuple[str, SampleScore, list | None]]:
    """(id, score, GT classes) of every valid sample file, in id order: read_sample's checks, without
    building two Paths per file (at 10,000 files that was a third of a comparison's time)."""
    folder = str(d.samples)
    try:
        names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".json") and not e.name.startswith("."))
    except OSError:
        return []
    rows = []
    for name in names:
        sid = name[: -len(".json")]
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                doc = parse_sample(json.load(fh), sid)
        except SAMPLE_READ_ERRORS:
            continue
        if doc is not None:
            rows.append((sid, doc["score"], doc.get("gt_classes")))
    return rows


def grid_corners(boxes: np.ndarray, sizes: np.ndarray, size: int = MASK_SIZE) -> np.ndarray:
    """metrics.box_to_grid (with the image size) of many boxes at once: to image pixels, GAR's clip_box,
    scaled to the grid, clip_box again (tests compare it with box_to_grid box by box)."""
    side = np.concatenate([sizes, sizes], axis=1).astype(np.float64)  # W, H, W, H
    px = _clip(np.round(boxes * side), side)
    return _clip(np.round(px * (size / side)), np.full_like(side, size))


def _clip(b: np.ndarray, side: np.ndarray) -> np.ndarray:
    """rules.gar_clip_box row-wise: clip into [0, side-1], truncate, re-order, a zero-size side grows by one."""
    b = np.trunc(np.minimum(np.maximum(b, 0), side - 1))
    x1, x2 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
    y1, y2 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
    x2 = np.where(x2 == x1, np.minimum(x1 + 1, side[:, 0] - 1), x2)
    y2 = np.where(y2 == y1, np.minimum(y1 + 1, side[:, 1] - 1), y2)
    return np.stack([x1, y1, x2, y2], axis=1)


def _rectangles(f: Folder, rows: list[tuple]) -> None:
    """tp / predicted / GT pixel counts of one-box samples from their grid corners (inclusive pixels)."""
    idx = np.array([r[0] for r in rows])
    sizes = np.array([r[3] for r in rows], dtype=np.float64)
    gt = grid_corners(np.array([r[1] for r in rows], dtype=np.float64), sizes)
    has = np.array([r[2] is not None for r in rows])
    pred = grid_corners(np.array([r[2] if r[2] is not None else r[1] for r in rows], dtype=np.float64), sizes)

    def area(b):
        return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)

    iw = np.minimum(gt[:, 2], pred[:, 2]) - np.maximum(gt[:, 0], pred[:, 0]) + 1
    ih = np.minimum(gt[:, 3], pred[:, 3]) - np.maximum(gt[:, 1], pred[:, 1]) + 1
    f.pos[idx] = area(gt)
    f.on[idx] = np.where(has, area(pred), 0)
    f.tp[idx] = np.where(has, np.clip(iw, 0, None) * np.clip(ih, 0, None), 0)


def ap_from_counts(tp, on, pos, pixels=PIXELS):
    """AP of binary masks from pixel counts (sklearn's step AP, as metrics.average_precision computes it):
    recall * precision at the predicted pixels, then the rest of the recall at the GT's share of all pixels."""
    tp, on, pos, pixels = (np.asarray(x, dtype=np.float64) for x in (tp, on, pos, pixels))
    rec = np.divide(tp, pos, out=np.zeros(np.broadcast(tp, pos).shape), where=pos > 0)
    prec = np.divide(tp, on, out=np.zeros(np.broadcast(tp, on).shape), where=on > 0)
    ap = rec * prec + (1 - rec) * np.divide(
        pos, pixels, out=np.zeros(np.broadcast(pos, pixels).shape), where=pixels > 0
    )
    return np.where(pos > 0, ap, 0.0)


def _columns(f: Folder, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample contributions of the chosen samples: every metric is built from their weighted sums."""
    tp, on, pos = f.tp[idx], f.on[idx], f.pos[idx]
    c = f.ciou[idx]
    reached = c[:, None] >= THRESHOLDS[None, :]
    valid = ~np.isnan(f.matched[idx])
    return {
        "hit3": (c >= 0.3).astype(float),
        "hit5": (c >= 0.5).astype(float),
        "auc": reached @ _AUC_WEIGHTS,
        "ap": ap_from_counts(tp, on, pos),
        "tp": tp,
        "on": on,
        "pos": pos,
        "matched": np.where(valid, f.matched[idx], 0.0),
        "matched_n": valid.astype(float),
    }


_ORDER = ("hit3", "hit5", "auc", "ap", "tp", "on", "pos", "matched", "matched_n")


def _metrics(sums: np.ndarray, n: np.ndarray, duet: bool) -> dict[str, np.ndarray]:
    """Metric values from column sums (rows: resamples; columns in _ORDER) and the resampled count."""
    col = dict(zip(_ORDER, sums.T))
    out = {
        "ciou@0.3": col["hit3"] / n,
        "ciou@0.5": col["hit5"] / n,
        "auc": col["auc"] / n,
        "ap": col["ap"] / n,
        "piap": ap_from_counts(col["tp"], col["on"], col["pos"], n * PIXELS),
    }
    if duet:
        out["matched_mean_iou"] = np.divide(
            col["matched"], col["matched_n"], out=np.full(len(n), np.nan), where=col["matched_n"] > 0
        )
    return out


def metric_values(f: Folder, idx: np.ndarray, duet: bool) -> dict[str, float | None]:
    """The folder's metrics over the samples idx (what summarize gives for them)."""
    if not len(idx):
        return {k: None for k in (*METRICS, *(["matched_mean_iou"] if duet else []))}
    cols = _columns(f, idx)
    sums = np.array([[cols[k].sum() for k in _ORDER]])
    return {k: _num(v[0]) for k, v in _metrics(sums, np.array([float(len(idx))]), duet).items()}


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or np.isnan(v) else float(v)


def resample_counts(n: int, resamples: int, seed: int, chunk: int | None = None) -> Iterator[np.ndarray]:
    """Bootstrap draws as count matrices (rows: resamples, columns: how often each sample was drawn).

    Drawn chunk by chunk from one seeded generator as index rows, so the draws do not depend on the chunk size.
    The default chunk holds about CHUNK_CELLS draws: its indices and counts stay in the CPU's cache (with 1,000
    rows of 5,000 samples the counting was memory-bound and took 2-3x longer).
    """
    rng = np.random.default_rng(seed)
    chunk = chunk or max(1, CHUNK_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        idx = rng.integers(0, n, size=(k, n))
        idx += (np.arange(k) * n)[:, None]  # row r counts into its own n bins
        yield np.bincount(idx.ravel(), minlength=k * n).reshape(k, n).astype(np.float64)
        done += k


def paired_bootstrap(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], duet: bool, resamples: int = 10_000, seed: int = 0
) -> dict[str, np.ndarray]:
    """B-A of every metric for each resample of the paired samples (columns from `_columns`)."""
    n, width = len(a["hit5"]), len(_ORDER)
    both = np.column_stack([a[k] for k in _ORDER] + [b[k] for k in _ORDER])  # one product for A and B
    sums = np.empty((resamples, 2 * width))
    done = 0
    # One BLAS thread: each product is small (CHUNK_CELLS x 18), and OpenBLAS's threads spin-waiting for
    # one another on a busy machine cost 2-10x the product's own CPU time.
    with threadpool_limits(limits=1, user_api="blas"):
        for w in resample_counts(n, resamples, seed):
            sums[done : done + len(w)] = w @ both
            done += len(w)
    total = np.full(resamples, float(n))  # every resample draws n samples
    va, vb = _metrics(sums[:, :width], total, duet), _metrics(sums[:, width:], total, duet)
    return {k: vb[k] - va[k] for k in va}


def binomial_two_sided_half(k: int, n: int) -> float:
    """p-value of the exact two-sided binomial test of k successes in n trials at p = 1/2, what
    scipy.stats.binomtest gives (importing scipy.stats cost a comparison most of a second): twice the
    smaller tail, at most 1. The tail's largest term is C(n, k) / 2^(n-1) rounded once from integers; the
    smaller ones follow by the ratio C(n, i-1) / C(n, i) = i / (n-i+1) until they no longer add anything."""
    k = min(k, n - k)
    if 2 * k >= n:
        return 1.0
    term = math.comb(n, k) / 2 ** (n - 1)  # int / int: correctly rounded, 0.0 below the smallest float
    tail = 0.0
    while k >= 0 and tail + term != tail:
        tail += term
        term *= k / (n - k + 1)
        k -= 1
    return min(1.0, tail)


def mcnemar(hit_a: np.ndarray, hit_b: np.ndarray) -> dict:
    """Exact McNemar test: a two-sided binomial test on the discordant pairs."""
    a_only = int(np.count_nonzero(hit_a & ~hit_b))
    b_only = int(np.count_nonzero(hit_b & ~hit_a))
    p = binomial_two_sided_half(b_only, a_only + b_only)
    return {"a_only": a_only, "b_only": b_only, "both": int(np.count_nonzero(hit_a & hit_b)), "p_value": float(p)}


def _gt_sha256(path: str | None) -> str | None:
    """The GT file's hash, or None when the folder names none or it cannot be read (then not compared)."""
    try:
        return file_sha256(path) if path else None
    except OSError:
        return None


def check_comparable(base: Folder, other: Folder) -> None:
    """CompareError (one line) when two folders do not measure the same benchmark with the same GT."""
    ca, cb = base.config, other.config
    if ca["dataset"] != cb["dataset"]:
        raise CompareError(
            f"{other.root} evaluates {cb['dataset']}, {base.root} evaluates {ca['dataset']}: "
            "compare folders of the same benchmark"
        )
    ga, gb = ca["settings"].get("gt_boxes"), cb["settings"].get("gt_boxes")
    if ga != gb:
        raise CompareError(
            f"{other.root} uses --gt-boxes {gb}, {base.root} uses {ga}: rescore one with the other's GT to compare"
        )
    ha, hb = _gt_sha256((ca.get("data") or {}).get("gt")), _gt_sha256((cb.get("data") or {}).get("gt"))
    if ha and hb and ha != hb:
        raise CompareError(
            f"{other.root} and {base.root} were scored against different GT files "
            f"({cb['data']['gt']} vs {ca['data']['gt']}): compare folders of the same GT"
        )
    gts = dict(zip(base.ids, base.gt))
    for sid, gt in zip(other.ids, other.gt):
        if sid not in gts:
            continue
        if gts[sid] == gt:  # read from the same GT file: the same floats (allclose only when not)
            continue
        a, b = np.asarray(gts[sid], float), np.asarray(gt, float)
        if a.shape != b.shape or not np.allclose(a, b):
            raise CompareError(
                f"sample {sid} has other GT boxes in {other.root} than in {base.root}: the folders use different GT"
            )


def _flip(a: float, b: float, t: float) -> int:
    return (b >= t) - (a >= t)


def compare_pair(
    base: Folder,
    other: Folder,
    resamples: int = 10_000,
    seed: int = 0,
    strict: bool = False,
    eps: float = 1e-9,
    points: bool = False,
) -> dict:
    """Folder `other` against `base`: paired metrics with intervals, McNemar, changed samples
    (with `points`, every paired sample's [id, cIoU in A, cIoU in B] too: the viewer's scatter)."""
    check_comparable(base, other)
    duet = DATASETS[base.config["dataset"]].sources > 1
    ev_a = {sid: i for i, sid in enumerate(base.ids) if strict or not base.failed[i]}
    ev_b = {sid: i for i, sid in enumerate(other.ids) if strict or not other.failed[i]}
    both = sorted(set(ev_a) & set(ev_b))
    ia = np.array([ev_a[s] for s in both], dtype=int)
    ib = np.array([ev_b[s] for s in both], dtype=int)
    va, vb = metric_values(base, ia, duet), metric_values(other, ib, duet)
    deltas = {}
    if len(both):
        deltas = paired_bootstrap(_columns(base, ia), _columns(other, ib), duet, resamples, seed)
    rows = []
    for k in va:
        before, after = va[k], vb[k]
        d = None if before is None or after is None else after - before
        samples = deltas.get(k)
        ci = None
        if samples is not None and d is not None:
            finite = samples[~np.isnan(samples)]
            ci = [float(x) for x in np.percentile(finite, [2.5, 97.5])] if finite.size else None
        rows.append({"metric": k, "a": va[k], "b": vb[k], "delta": d, "ci95": ci})
    ca, cb = base.ciou[ia], other.ciou[ib]
    test = mcnemar(ca >= 0.5, cb >= 0.5)
    changed, by_gate, by_class = [], defaultdict(list), defaultdict(list)
    for j, sid in enumerate(both):
        a, b = float(ca[j]), float(cb[j])
        ga, gb = base.gate[ia[j]], other.gate[ib[j]]
        entry = {
            "id": sid,
            "ciou_a": a,
            "ciou_b": b,
            "delta": b - a,
            "flip_0.3": _flip(a, b, 0.3),
            "flip_0.5": _flip(a, b, 0.5),
            "gate_a": ga,
            "gate_b": gb,
            "class": base.classes[ia[j]],
        }
        by_gate[f"{ga} -> {gb}"].append(entry)
        by_class[entry["class"]].append(entry)
        if abs(b - a) > eps or ga != gb:
            changed.append(entry)
    changed.sort(key=lambda e: (-abs(e["delta"]), e["id"]))
    extra = {"points": [[sid, float(ca[j]), float(cb[j])] for j, sid in enumerate(both)]} if points else {}
    return {
        **extra,
        "folder": str(other.root),
        "n_paired": len(both),
        "metrics": rows,
        "mcnemar": test,
        "only_a": sorted(set(ev_a) - set(ev_b)),
        "only_b": sorted(set(ev_b) - set(ev_a)),
        "summary": {
            "up": sum(e["delta"] > eps for e in changed),
            "down": sum(e["delta"] < -eps for e in changed),
            "up_0.5": sum(e["flip_0.5"] > 0 for e in changed),
            "down_0.5": sum(e["flip_0.5"] < 0 for e in changed),
            "up_0.3": sum(e["flip_0.3"] > 0 for e in changed),
            "down_0.3": sum(e["flip_0.3"] < 0 for e in changed),
            "gate_changed": sum(e["gate_a"] != e["gate_b"] for e in changed),
        },
        "by_gate": _groups(by_gate, eps),
        "by_class": _groups(by_class, eps),
        "changed": changed,
    }


def _groups(groups: dict[str, list[dict]], eps: float) -> list[dict]:
    out = [
        {
            "group": g,
            "n": len(es),
            "up": sum(e["delta"] > eps for e in es),
            "down": sum(e["delta"] < -eps for e in es),
            "mean_delta": float(np.mean([e["delta"] for e in es])),
        }
        for g, es in groups.items()
    ]
    return sorted(out, key=lambda g: (-(g["up"] + g["down"]), -g["n"], g["group"]))


def compare_folders(
    paths: Sequence[str | Path], resamples: int = 10_000, seed: int = 0, strict: bool = False, points: bool = False
) -> dict:
    """The first folder against each of the others (B-A, C-A, ...); the JSON of `gar eval compare --json`."""
    folders = [load_folder(p) for p in paths]
    base = folders[0]
    for f in folders[1:]:  # every mismatch before any bootstrap
        check_comparable(base, f)
    duet = DATASETS[base.config["dataset"]].sources > 1
    return {
        "dataset": base.config["dataset"],
        "resamples": resamples,
        "seed": seed,
        "strict": strict,
        "folders": [str(f.root) for f in folders],
        "values": [
            metric_values(f, np.array([i for i in range(len(f.ids)) if strict or not f.failed[i]], dtype=int), duet)
            for f in folders
        ],
        "comparisons": [compare_pair(base, f, resamples, seed, strict, points=points) for f in folders[1:]],
    }

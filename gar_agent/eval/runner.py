"""Resumable benchmark evaluation: run the graph on every sample, one atomic file per sample.

Layout of an evaluation folder OUT (see docs/eval.md):

- `eval.json`: the settings the folder was made with (a resumed run must match them);
- `samples/<id>.json`: the result JSON, the SampleScore fields and that sample's cIoU / AP, written
  atomically, so a sample either has a complete file or none (a corrupt one is redone);
- `traces/<id>/trace.json`: the run's trace (run id = sample id), what the gate sweep replays;
- `vis/<id>.jpg`: prediction (source colours) and ground truth (yellow, "GT");
- `metrics.json`: the benchmark numbers, always computed from the sample files at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError

from gar_agent import __version__
from gar_agent.errors import UserError
from gar_agent.eval.datasets import DATASETS, DatasetSpec, Sample
from gar_agent.eval.metrics import SampleScore, normalize_box, summarize
from gar_agent.media import Media, MediaError, load_media
from gar_agent.models.faults import is_backend_fault
from gar_agent.overlay import result_items, save_overlay
from gar_agent.prompts import PromptSet
from gar_agent.result import RunResult
from gar_agent.run import run_and_record
from gar_agent.state import Settings
from gar_agent.topology import Topology
from gar_agent.trace.store import atomic_write

FORMAT = 1  # of eval.json and samples/<id>.json
GT_COLOR = (255, 215, 0)  # RGB yellow: apart from the source colours of gar_agent.overlay
# What must be equal for a resumed run to continue a folder (the rest of eval.json is informative).
CHECKED = ("dataset", "settings")


class SettingsMismatch(UserError):
    """An evaluation folder made with other settings than the ones given; the message is one line."""


class SampleCrash(RuntimeError):
    """The graph raised on a sample (a bug or a broken graph/prompt, not a model or media failure)."""


@dataclass(frozen=True)
class EvalDir:
    """The files of one evaluation folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "eval.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def sweep(self) -> Path:
        return self.root / "sweep.json"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def traces(self) -> Path:
        return self.root / "traces"

    @property
    def vis(self) -> Path:
        return self.root / "vis"

    def sample(self, sid: str) -> Path:
        """samples/<id>.json."""
        return self.samples / f"{sid}.json"

    def trace(self, sid: str) -> Path:
        """traces/<id>/trace.json."""
        return self.traces / sid / "trace.json"

    def stored_ids(self) -> list[str]:
        """Ids with a sample file (valid or not), sorted; temporary files of a killed write are skipped."""
        if not self.samples.is_dir():
            return []
        return sorted(p.stem for p in self.samples.glob("*.json") if not p.name.startswith("."))


# --------------------------------------------------------------------------- settings (eval.json)


def eval_config(
    dataset: DatasetSpec,
    settings: Settings,
    topology: Topology,
    prompts: PromptSet,
    gt_boxes: str,
    data: dict[str, str],
    model: str | None = None,
) -> dict:
    """The eval.json document: what a resumed run must repeat, plus where the data came from."""
    return {
        "format": FORMAT,
        "dataset": dataset.name,
        "settings": {
            **settings.model_dump(mode="json"),
            "model": model,
            "gt_boxes": gt_boxes,
            "graph_file": str(topology.path),
            "graph_sha256": topology.sha256,
            "prompts_dir": str(prompts.directory),
            "prompts": prompts.hashes(),
        },
        "data": data,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "package_version": __version__,
    }


def read_config(d: EvalDir) -> dict:
    """The folder's eval.json; SettingsMismatch when absent or unreadable."""
    try:
        doc = json.loads(d.config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsMismatch(f"{d.root} is not an evaluation folder: no {d.config.name} in it") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SettingsMismatch(f"{d.config} cannot be read ({type(e).__name__}): it is corrupt") from None
    if not isinstance(doc, dict) or doc.get("dataset") not in DATASETS or not isinstance(doc.get("settings"), dict):
        raise SettingsMismatch(f"{d.config} is not an eval.json written by `gar eval`")
    return doc


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "prompts":
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {'(changed files)' if key == 'prompts' else f'{a!r} -> {b!r}'}")
    return out


def check_folder(d: EvalDir, config: dict) -> bool:
    """Whether OUT is a folder to resume (True) or a new one (False); nothing is written.

    A folder made with other settings, or holding sample files but no eval.json, raises
    SettingsMismatch rather than mix results of two configurations.
    """
    if not d.config.exists():
        if d.stored_ids():
            raise SettingsMismatch(
                f"{d.root} holds sample files but no {d.config.name}: their settings are unknown, give another --out"
            )
        return False
    old = read_config(d)
    diff = _differences({k: old.get(k) for k in CHECKED}, {k: config[k] for k in CHECKED})
    if diff:
        shown = "; ".join(diff[:3]) + (f"; +{len(diff) - 3} more" if len(diff) > 3 else "")
        raise SettingsMismatch(
            f"{d.root} holds an evaluation with other settings ({shown}): "
            "rerun with the same settings to resume, or give another --out"
        )
    return True


def store_config(d: EvalDir, config: dict) -> None:
    """Write eval.json (before the first sample, so every sample file has known settings)."""
    d.root.mkdir(parents=True, exist_ok=True)
    atomic_write(d.config, json.dumps(config, indent=1) + "\n")


# --------------------------------------------------------------------------- one sample


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


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


def sample_document(
    score: SampleScore, result: RunResult | None, wall_s: float, trace: str | None, vis: str | None
) -> dict:
    """samples/<id>.json: the score fields, the sample's own metrics and the run's result JSON."""
    own = {"ciou": None, "ap": None, "per_source_iou": None, "matched_mean_iou": None}
    if not score.failed:  # a failed sample has no metric of its own (it is a miss only with --strict)
        own = {k: _finite(v) for k, v in score.metrics().items()}
    return {
        "format": FORMAT,
        "id": score.id,
        **own,
        "score": score.model_dump(mode="json"),
        "result": result.model_dump(mode="json") if result is not None else None,
        "trace": trace,
        "vis": vis,
        "wall_s": round(wall_s, 6),
    }


def read_sample(d: EvalDir, sid: str) -> dict | None:
    """A stored sample document, or None when absent, half-written or not this sample's."""
    try:
        doc = json.loads(d.sample(sid).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("id") != sid:
            return None
        doc["score"] = SampleScore.model_validate(doc["score"])
        return doc if doc["score"].id == sid else None
    except (OSError, ValueError, KeyError, TypeError, ValidationError):
        return None


def _gt_items(gt_boxes: list[list[float]], width: int, height: int) -> list[dict]:
    items = []
    for box in gt_boxes:
        x1, y1, x2, y2 = box
        px = [round(x1 * width), round(y1 * height), round(x2 * width), round(y2 * height)]
        px = [min(max(v, 0), (width if i % 2 == 0 else height) - 1) for i, v in enumerate(px)]
        items.append({"box": px, "label": "GT", "color": GT_COLOR})
    return items


@dataclass
class EvalJob:
    """What every sample of a run shares: one model instance, one graph, one prompt set."""

    d: EvalDir
    settings: Settings
    model: BaseChatModel
    topology: Topology
    prompts: PromptSet
    max_audio_s: float = 30.0
    vis: bool = True


def evaluate_sample(job: EvalJob, sample: Sample) -> dict:
    """Run the graph on one sample, write its trace, overlay and (last, atomically) its sample file."""
    start = time.perf_counter()
    d = job.d
    try:
        media: Media = load_media(sample.frame, sample.audio, job.max_audio_s)
    except MediaError as e:  # one bad file fails its sample, not the benchmark
        score = score_result(sample.id, sample.gt_boxes, None, f"media: {e}")
        doc = sample_document(score, None, time.perf_counter() - start, None, None)
    else:
        try:
            outcome = run_and_record(
                media,
                job.settings,
                job.model,
                topology=job.topology,
                prompts=job.prompts,
                trace_dir=d.traces,
                thread_id=sample.id,
            ).outcome
        except Exception as e:  # the graph itself raised: stop the benchmark, say on which sample
            raise SampleCrash(f"sample {sample.id}: {type(e).__name__}: {' '.join(str(e).split())}") from e
        result = outcome.result
        vis = None
        if job.vis:
            vis = f"vis/{sample.id}.jpg"
            items = result_items(result) + _gt_items(sample.gt_boxes, media.image_info.width, media.image_info.height)
            save_overlay(media.image, items, d.root / vis)
        score = score_result(sample.id, sample.gt_boxes, result)
        doc = sample_document(score, result, time.perf_counter() - start, f"traces/{sample.id}/trace.json", vis)
    d.samples.mkdir(parents=True, exist_ok=True)
    # written last and atomically: a sample file exists only for a finished sample
    atomic_write(d.sample(sample.id), json.dumps(doc, indent=1) + "\n")
    doc["score"] = score
    return doc


def split_done(d: EvalDir, samples: Sequence[Sample], retry_failed: bool = False) -> tuple[list[Sample], list[dict]]:
    """(samples still to run, documents of those already done) for a resumed folder.

    A sample that failed because the server did (unreachable, still 5xx after its retries, a
    malformed body) is run again without asking; other failures only with `retry_failed`.
    """
    todo, done = [], []
    for s in samples:
        doc = read_sample(d, s.id)
        failed = doc is not None and doc["score"].failed
        if doc is None or (failed and (retry_failed or is_backend_fault(doc["score"].error))):
            todo.append(s)
        else:
            done.append(doc)
    return todo, done


def clean_partial_writes(d: EvalDir) -> int:
    """Remove temporary files a killed run left behind; returns how many."""
    n = 0
    for folder in (d.root, d.samples, *(d.traces.glob("*") if d.traces.is_dir() else ())):
        for tmp in folder.glob(".tmp-*") if folder.is_dir() else ():
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def run_samples(
    job: EvalJob, samples: Sequence[Sample], workers: int = 1, on_done: Callable[[dict], None] | None = None
) -> None:
    """Evaluate samples, `workers` at a time; `on_done` gets each sample document in the calling thread.

    On an interruption (Ctrl-C) the samples not yet started are cancelled; the ones running finish
    and are written, so nothing is lost or half-counted.
    """
    on_done = on_done or (lambda doc: None)
    if workers <= 1:
        for s in samples:
            on_done(evaluate_sample(job, s))
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gar-eval")
    try:
        queue = iter(samples)
        running = {pool.submit(evaluate_sample, job, s) for s in _take(queue, workers)}
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                on_done(f.result())
            # submit as others finish (not all at once), so an interruption leaves little queued
            running |= {pool.submit(evaluate_sample, job, s) for s in _take(queue, len(finished))}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _take(it, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


# --------------------------------------------------------------------------- metrics


def load_scores(d: EvalDir, ids: Iterable[str] | None = None) -> tuple[list[SampleScore], list[str]]:
    """(SampleScores of the valid sample files, ids whose file is unreadable), sorted by id."""
    scores, bad = [], []
    for sid in sorted(set(ids) if ids is not None else d.stored_ids()):
        doc = read_sample(d, sid)
        if doc is None:
            bad.append(sid)
        else:
            scores.append(doc["score"])
    return scores, bad


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
    return {
        **summarize(ordered, duet=duet, strict=strict),
        "dataset": config["dataset"],
        "strict": strict,
        "gt_boxes": gt_boxes or config["settings"].get("gt_boxes"),
        "settings": config["settings"],
        "n_missing": len(missing),
        "missing": list(missing),
        "failed": [{"id": s.id, "error": s.error} for s in ordered if s.failed],
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
    try:
        missing = json.loads(d.metrics.read_text(encoding="utf-8")).get("missing", [])
    except (OSError, ValueError, AttributeError):
        missing = []
    doc = metrics_document(scores, config, strict, missing, gt_boxes)
    write_metrics(d, doc)
    return Rescored(doc, unreadable, no_gt)

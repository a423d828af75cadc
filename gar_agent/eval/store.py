"""The evaluation folder: its layout, its settings file, and one atomic file per finished sample.

Layout of an evaluation folder OUT:

- `eval.json`: the settings the folder was made with (a resumed run must match them);
- `spec.json`: the run spec (gar_agent.spec.RunSpec: backend options, graph source, template texts),
  written once; each trace records it without the texts;
- `samples/<id>.json`: the result JSON, the SampleScore fields and that sample's cIoU / AP, written
  atomically, so a sample either has a complete file or none (a corrupt one is redone);
- `traces/<id>/trace.json`: the run's trace (run id = sample id), what the gate sweep replays;
- `vis/<id>.jpg`: prediction (source colours) and ground truth (yellow, "GT");
- `metrics.json`: the benchmark numbers, always computed from the sample files at the end;
- `.lock`: held (flock) by the one `gar eval` writing the folder, and holding its pid.

A failed sample's error says what failed it (`failure_kind`): its input (`media: ...`, e.g. a frame
over the pixel limit), our own code (`internal error: ...`, the traceback in its sample file), the
serving side (a backend fault), or the run itself (the model's answers, e.g. no usable box).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gar_agent.errors import UserError
from gar_agent.eval.datasets import DATASETS, DatasetSpec, Sample
from gar_agent.eval.metrics import SampleScore
from gar_agent.models.openai import is_backend_fault
from gar_agent.prompts import PromptSet
from gar_agent.result import RunResult
from gar_agent.spec import SPEC_FILE
from gar_agent.state import Settings
from gar_agent.trace.store import atomic_write
from gar_agent.version import __version__

if TYPE_CHECKING:  # a type only: importing topology loads LangGraph (~1 s), which reading a folder never needs
    from gar_agent.topology import Topology

fcntl: ModuleType | None  # the module where the platform has it
try:
    import fcntl
except ImportError:  # Windows: no flock; the folder is then not locked
    fcntl = None

FORMAT = 1  # of eval.json and samples/<id>.json
CHECKED = ("dataset", "settings")
INPUT_ERROR = "media: "  # the prefix of a sample's error when its frame or audio could not be used
INTERNAL_ERROR = "internal error: "  # ... when our code raised on it (the traceback is in its sample file)


def failure_kind(error: str | None) -> str:
    """What failed a sample, from its error: input | internal | backend | run (the model's answers)."""
    if error and error.startswith(INPUT_ERROR):
        return "input"
    if error and error.startswith(INTERNAL_ERROR):
        return "internal"
    return "backend" if is_backend_fault(error) else "run"


class SettingsMismatch(UserError):
    """An evaluation folder made with other settings than the ones given; the message is one line."""


class FolderInUse(UserError):
    """Another process holds the evaluation folder; the message names its pid."""


@contextlib.contextmanager
def hold_folder(root: Path):
    """Hold OUT for this process while the block runs: a second `gar eval` on it stops (FolderInUse).

    Two runs on one folder would each compute every sample and delete each other's temporary files.
    The lock is an flock on OUT/.lock, released by the kernel however the holder ends (forked workers
    share it while they live); the file holds the holder's pid, for the message.
    """
    root.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise FolderInUse(
                f"{root} is in use by another gar eval (pid {holder}): wait for it to end, or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EvalDir:
    """The files of one evaluation folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "eval.json"

    @property
    def spec(self) -> Path:
        """spec.json: the folder's run spec (gar_agent.trace.spec_file.read_spec reads it)."""
        return self.root / SPEC_FILE

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


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def sample_document(
    score: SampleScore,
    result: RunResult | None,
    wall_s: float,
    trace: str | None,
    vis: str | None,
    gt_classes: list[str] | None = None,
) -> dict:
    """samples/<id>.json: the score fields, the sample's own metrics and the run's result JSON."""
    own: dict[str, object] = {"ciou": None, "ap": None, "per_source_iou": None, "matched_mean_iou": None}
    if not score.failed:  # a failed sample has no metric of its own (it is a miss only with --strict)
        own = {k: _finite(v) for k, v in score.metrics().items()}
    return {
        "format": FORMAT,
        "id": score.id,
        **own,
        "score": score.model_dump(mode="json"),
        "result": result.model_dump(mode="json") if result is not None else None,
        "gt_classes": list(gt_classes or []),  # the benchmark's classes of the sample's sources
        "trace": trace,
        "vis": vis,
        "wall_s": round(wall_s, 6),
    }


# What reading a sample file someone else wrote can raise (RecursionError: nesting past json's limit).
SAMPLE_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, ValidationError, RecursionError)


def parse_sample(doc: Any, sid: str) -> dict | None:
    """A parsed sample file as a sample document (its score validated), or None when it is not this
    sample's. Raises one of SAMPLE_READ_ERRORS when its score is malformed."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("id") != sid:
        return None
    doc["score"] = SampleScore.model_validate(doc["score"])
    return doc if doc["score"].id == sid else None


def read_sample(d: EvalDir, sid: str) -> dict | None:
    """A stored sample document, or None when absent, half-written or not this sample's."""
    try:
        return parse_sample(json.loads(d.sample(sid).read_text(encoding="utf-8")), sid)
    except SAMPLE_READ_ERRORS:
        return None


def recorded_missing(d: EvalDir) -> list:
    """The ids metrics.json lists as missing (no frame or audio), or [] when it has none it can give."""
    try:
        missing = json.loads(d.metrics.read_text(encoding="utf-8")).get("missing", [])
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    return missing if isinstance(missing, list) else []


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

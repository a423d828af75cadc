"""The folder `gar view` serves: what it is (traces, one run, an evaluation, a collection), its runs and
evaluations listed and filtered, and the parsed traces kept between requests.

Traces are read only with the trace store (`gar_agent.trace.store`), evaluation samples with the eval
store (`gar_agent.eval.store`); each listed row is built by `gar_agent.view.documents`, the one
module that turns saved formats into the documents the page shows.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from gar_agent.eval.store import EvalDir, read_sample
from gar_agent.trace.schema import Trace
from gar_agent.trace.store import TRACE_FILE, TraceError, load_json, read_trace
from gar_agent.view.documents import frame_size, gate_stats, run_summary, sample_row, to_pixels
from gar_agent.view.safety import OutsideRoot, inside, relative_ref


class ViewError(ValueError):
    """A run or folder the viewer cannot show; the message is one line for an error card."""


class TraceCache:
    """Parsed traces kept between requests: an LRU keyed by (path, mtime, size), one parse per path at a time.

    Parsing a 200 MB trace takes seconds and ~0.6 GB; without this, every request (the run page, its
    thumbnail, its waveform, a diff) parsed it again, and 4 parallel requests held 4 copies. An error
    is kept too, so an unreadable trace is not re-read by each listing.
    """

    def __init__(self, entries: int = 16, max_bytes: int = 512_000_000) -> None:
        self.entries, self.max_bytes = entries, max_bytes
        self.lock = threading.Lock()
        self.items: OrderedDict[tuple, tuple[Trace | TraceError, int]] = OrderedDict()
        self.parsing: dict[str, threading.Lock] = {}  # path -> held while one thread parses it

    def _hit(self, key: tuple):
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def read(self, path: Path) -> Trace:
        """The trace at path (TraceError as read_trace raises it), parsed once while the file is unchanged."""
        try:
            st = path.stat()
        except OSError:
            return read_trace(path)  # gone or unreadable: read_trace says so in one line
        key = (str(path), st.st_mtime_ns, st.st_size)
        found = self._hit(key)
        if found is None:
            with self.lock:
                gate = self.parsing.setdefault(str(path), threading.Lock())
            with gate:  # a second request for the same file waits for the first parse, then hits
                found = self._hit(key)
                if found is None:
                    try:
                        value: Trace | TraceError = read_trace(path)
                    except TraceError as e:
                        value = e
                    found = (value, st.st_size)
                    with self.lock:
                        self.items[key] = found
                        for old in [k for k in self.items if k[0] == key[0] and k != key]:
                            del self.items[old]  # an older version of the same file
                        while len(self.items) > 1 and (
                            len(self.items) > self.entries or sum(n for _, n in self.items.values()) > self.max_bytes
                        ):
                            self.items.popitem(last=False)
        if isinstance(found[0], TraceError):
            raise TraceError(str(found[0]))  # a fresh one per request: threads do not share a traceback
        return found[0]


# --------------------------------------------------------------------------- the served folder


@dataclass
class Folder:
    """The folder `gar view` serves: a traces folder, one run, or a `gar eval` output folder."""

    root: Path
    mode: str  # "traces" | "run" | "eval"
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _runs: dict[str, tuple[tuple[int, int] | None, dict]] = field(
        default_factory=dict, repr=False
    )  # ref -> (stat key, row)
    _samples: dict[str, tuple[tuple, dict]] = field(default_factory=dict, repr=False)  # id -> (stat key, row)
    traces: TraceCache = field(default_factory=TraceCache, repr=False)
    _evals: dict[str, Folder] = field(default_factory=dict, repr=False)  # ref -> an evaluation in a collection

    @classmethod
    def open(cls, path: str | Path) -> Folder:
        """Decide what PATH is; ViewError (one line) when it is nothing the viewer can serve."""
        p = Path(path)
        if not p.exists():
            raise ViewError(
                f"{p} does not exist: give a traces folder, a run (folder or trace.json) or a gar eval folder"
            )
        if p.is_file():
            if p.suffix != ".json":
                raise ViewError(f"{p} is not a trace file (trace.json) nor a folder")
            return cls(p.parent.resolve(), "run")
        if (p / TRACE_FILE).is_file():
            return cls(p.resolve(), "run")
        if (p / "eval.json").is_file() or (p / "samples").is_dir():
            return cls(p.resolve(), "eval")
        return cls(p.resolve(), "traces")

    # ----------------------------------------------------------------- runs

    def trace_path(self, ref: str) -> Path:
        """The trace file of a run named by its folder (or file) relative to the root; OutsideRoot if none."""
        target = inside(self.root, ref)
        if target.is_dir():
            target = inside(self.root, f"{ref.rstrip('/')}/{TRACE_FILE}" if ref not in ("", ".") else TRACE_FILE)
        if not target.is_file():
            raise OutsideRoot(ref)
        return target

    def read(self, ref: str) -> Trace:
        """The trace of a run; OutsideRoot (404) or ViewError (corrupt or foreign: an error card)."""
        path = self.trace_path(ref)
        try:
            return self.traces.read(path)
        except TraceError as e:
            raise ViewError(str(e).replace(str(self.root) + os.sep, "")) from None

    def run_folders(self) -> list[Path]:
        """Every run folder, newest first (by modification time: no trace has to be opened).

        A traces folder lists its runs and, one level down, the runs of each sub-folder that is not
        an evaluation (a parent folder holding `traces/` beside eval folders shows them all). An
        evaluation's own runs are listed on its page.
        """
        if self.mode == "run":
            return [self.root]
        base = self.root / "traces" if self.mode == "eval" else self.root
        found: list[tuple[float, Path]] = []
        for entry in _subfolders(base):
            f = entry / TRACE_FILE
            try:
                found.append((f.stat().st_mtime, entry))
                continue
            except OSError:
                pass
            if self.mode == "traces" and not _is_eval(entry):
                for sub in _subfolders(entry):
                    with contextlib.suppress(OSError):
                        found.append(((sub / TRACE_FILE).stat().st_mtime, sub))
        found.sort(key=lambda x: (-x[0], str(x[1])))
        return [p for _, p in found]

    def eval_folders(self) -> list[Path]:
        """The evaluation folders of a collection: sub-folders (and their sub-folders) holding eval.json."""
        if self.mode != "traces":
            return []
        out = []
        for entry in _subfolders(self.root):
            if _is_eval(entry):
                out.append(entry)
            elif not (entry / TRACE_FILE).is_file():
                out += [sub for sub in _subfolders(entry) if _is_eval(sub)]
        return sorted(out, key=lambda p: relative_ref(self.root, p))

    def evaluations(self) -> list[dict]:
        """One row per evaluation of a collection: its name, dataset, sample count, headline metrics, sweep."""
        rows = []
        for path in self.eval_folders():
            ref = relative_ref(self.root, path)
            config, config_error = _json_file(path / "eval.json")
            metrics, metrics_error = _json_file(path / "metrics.json")
            samples = path / "samples"
            rows.append(
                {
                    "ref": ref,
                    "dataset": (config or {}).get("dataset"),
                    "settings": (config or {}).get("settings") or {},
                    "n_samples": sum(1 for _ in samples.glob("*.json")) if samples.is_dir() else 0,
                    "metrics": {k: (metrics or {}).get(k) for k in ("ciou@0.5", "auc", "ap", "n_failed")},
                    "error": config_error if config is None else None,
                    "metrics_error": metrics_error,
                    "sweep": (path / "sweep.json").is_file(),
                }
            )
        return rows

    def evaluation_folder(self, ref: str = ".") -> Folder:
        """The evaluation a request names: the served folder itself, or one inside a collection."""
        if ref in ("", "."):
            if self.mode != "eval":
                raise OutsideRoot("eval")
            return self
        if self.mode != "traces":
            raise OutsideRoot(ref)
        target = inside(self.root, ref)
        if not target.is_dir() or not _is_eval(target):
            raise OutsideRoot(ref)
        with self._lock:
            sub = self._evals.get(ref)
            if sub is None:
                # its own caches, but the parsed traces are shared with the collection
                sub = self._evals[ref] = Folder(target, "eval", traces=self.traces)
        return sub

    def _sample_of(self, ref: str) -> tuple[Folder, str] | None:
        """(evaluation, sample id) of a run named `<evaluation>/traces/<id>`, else None."""
        parts = ref.split("/")
        if len(parts) < 2 or parts[-2] != "traces":
            return None
        prefix = "/".join(parts[:-2]) or "."
        try:
            return self.evaluation_folder(prefix), parts[-1]
        except OutsideRoot:
            return None

    def run_row(self, folder: Path) -> dict:
        """One line of the runs list (cached until the trace file changes)."""
        ref = relative_ref(self.root, folder)
        f = folder / TRACE_FILE
        try:
            st = f.stat()
            key = (st.st_mtime_ns, st.st_size)
        except OSError:
            key = None
        with self._lock:
            cached = self._runs.get(ref)
        if cached and cached[0] == key:
            return cached[1]
        try:
            row = run_summary(self.read(ref), ref)
        except ViewError as e:
            row = {"ref": ref, "id": folder.name, "error": str(e)}
        except OutsideRoot:  # e.g. a symlinked run folder that points out of the served folder
            row = {"ref": ref, "id": folder.name, "error": "not served: it leads out of the served folder"}
        with self._lock:
            self._runs[ref] = (key, row)
        return row

    def runs(self, offset: int = 0, limit: int = 100, query: str = "") -> dict:
        """A page of the runs list; a query filters every run (each trace read once, then cached)."""
        folders = self.run_folders()
        if query:
            words = query.lower().split()
            rows = [r for r in (self.run_row(f) for f in folders) if all(w in _haystack(r) for w in words)]
            return {"total": len(rows), "offset": offset, "rows": rows[offset : offset + limit]}
        return {
            "total": len(folders),
            "offset": offset,
            "rows": [self.run_row(f) for f in folders[offset : offset + limit]],
        }

    def warm(self) -> None:
        """Read every run and sample once (in a background thread at start), so filters answer at once."""
        for f in self.run_folders():
            self.run_row(f)
        if self.mode == "eval":
            self.samples()
        for path in self.eval_folders():
            self.evaluation_folder(relative_ref(self.root, path)).samples()

    # ----------------------------------------------------------------- evaluation

    @property
    def eval_dir(self) -> EvalDir:
        return EvalDir(self.root)

    def sample_rows(self) -> list[dict]:
        """Every stored sample as a row (cached per file); unreadable files become error rows."""
        d = self.eval_dir
        rows = []
        for sid in d.stored_ids():
            try:
                st = d.sample(sid).stat()
                key = (st.st_mtime_ns, st.st_size)
            except OSError:
                continue
            with self._lock:
                cached = self._samples.get(sid)
            if cached and cached[0] == key:
                rows.append(cached[1])
                continue
            doc = read_sample(d, sid)
            row = sample_row(sid, doc)
            with self._lock:
                self._samples[sid] = (key, row)
            rows.append(row)
        return rows

    def samples(
        self,
        offset: int = 0,
        limit: int = 100,
        sort: str = "id",
        descending: bool = False,
        status: str = "",
        iou_min: float | None = None,
        iou_max: float | None = None,
        cls: str = "",
    ) -> dict:
        """A sorted, filtered page of the evaluation's samples."""
        rows = self.sample_rows()
        if status == "failed":
            rows = [r for r in rows if r["failed"]]
        elif status == "refined":
            rows = [r for r in rows if r["refined"]]
        elif status == "skipped":
            rows = [r for r in rows if r["skipped"]]
        elif status == "ok":
            rows = [r for r in rows if not r["failed"]]
        if iou_min is not None:
            rows = [r for r in rows if r["ciou"] is not None and r["ciou"] >= iou_min]
        if iou_max is not None:
            rows = [r for r in rows if r["ciou"] is not None and r["ciou"] <= iou_max]
        if cls:
            rows = [r for r in rows if any(cls.lower() in c.lower() for c in r["classes"])]
        if sort not in SAMPLE_SORTS:
            sort = "id"
        # None sorts last whatever the direction: a failed sample has no cIoU
        present = [r for r in rows if r.get(sort) is not None]
        absent = [r for r in rows if r.get(sort) is None]
        present.sort(key=lambda r: (r[sort], r["id"]), reverse=descending)
        rows = present + absent
        return {"total": len(rows), "offset": offset, "rows": rows[offset : offset + limit]}

    def evaluation(self) -> dict:
        """The evaluation page: settings, metrics, gate statistics, cIoU distribution."""
        d = self.eval_dir
        config, config_error = _json_file(d.config)
        metrics, metrics_error = _json_file(d.metrics)
        sweep, sweep_error = _json_file(d.sweep) if d.sweep.exists() else (None, None)
        rows = self.sample_rows()
        return {
            "root": self.root.name,
            "sweep": sweep,
            "sweep_error": sweep_error,
            "config": config,
            "config_error": config_error,
            "metrics": metrics,
            "metrics_error": metrics_error,
            "gate": gate_stats(rows, config),
            "ciou": [r["ciou"] for r in rows if r["ciou"] is not None],
            "n_samples": len(rows),
            "n_unreadable": sum(1 for r in rows if r.get("unreadable")),
        }

    def sample_gt(self, ref: str, trace: Trace) -> list[list[int]] | None:
        """Ground-truth boxes in pixels for a run of an evaluation folder (`[EVAL/]traces/<id>`), else None."""
        doc = self.sample_doc(ref)
        if doc is None:
            return None
        size = frame_size(trace)
        return [to_pixels(b, size["width"], size["height"]) for b in doc["score"].gt_boxes]

    def sample_doc(self, ref: str) -> dict | None:
        """The sample file of a run of an evaluation (the eval store's read_sample), else None."""
        found = self._sample_of(ref)
        return read_sample(found[0].eval_dir, found[1]) if found else None

    def sample_facts(self, ref: str) -> dict | None:
        """What the run page shows of an evaluation sample: its id and scores."""
        doc = self.sample_doc(ref)
        if doc is None:
            return None
        return {k: doc.get(k) for k in ("ciou", "ap", "matched_mean_iou")} | {"id": ref.split("/")[-1]}

    def vis_path(self, ref: str) -> Path | None:
        """The overlay `gar eval` drew for a sample (vis/<id>.jpg), if any."""
        found = self._sample_of(ref)
        if found is None:
            return None
        try:
            return inside(found[0].root, f"vis/{found[1]}.jpg")
        except OutsideRoot:
            return None


def _subfolders(base: Path) -> list[Path]:
    """The visible sub-folders of a folder (none when it is not one)."""
    try:
        with os.scandir(base) as it:
            return [Path(e.path) for e in it if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []


def _is_eval(path: Path) -> bool:
    return (path / "eval.json").is_file() or (path / "samples").is_dir()


SAMPLE_SORTS = ("id", "ciou", "ap", "matched_mean_iou", "refined", "skipped", "wall_s", "calls")


def _haystack(row: dict) -> str:
    return " ".join(str(v) for v in row.values()).lower()


def _json_file(path: Path) -> tuple[dict | None, str | None]:
    if not path.is_file():
        return None, f"no {path.name}"
    try:  # as untrusted as a trace: bounded size, numbers and nesting (NaN reads as no value)
        doc = load_json(path, path.name, nan_as_null=True)
    except TraceError as e:
        return None, str(e).replace(str(path.parent) + os.sep, "")
    return (doc, None) if isinstance(doc, dict) else (None, f"{path.name} is not a JSON object")

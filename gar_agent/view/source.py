"""What the viewer serves, read through the project's own APIs and turned into plain JSON documents.

This is the one module that knows the saved formats: traces are read only with the trace store
(`gar_agent.trace.store`, typed by `gar_agent.trace.schema`), differences with `gar trace diff`'s
`diff_traces`, evaluation samples with the eval store (`gar_agent.eval.store`), and a run's result
document through `result_view` below. When the trace format changes (e.g. each call stored once),
this module is what follows it; the page and the server only see the documents built here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from gar_agent.eval.store import EvalDir, read_sample
from gar_agent.result import RunResult
from gar_agent.state import SourceRecord
from gar_agent.trace.diff import diff_traces
from gar_agent.trace.schema import Trace
from gar_agent.trace.steps import GenerateUpdate
from gar_agent.trace.store import TRACE_FILE, TraceError, load_json, read_trace
from gar_agent.view.graph_svg import graph_svg, taken_path
from gar_agent.view.safety import OutsideRoot, inside, relative_ref

DEFAULT_PROTOCOL = "gar"  # traces written before protocols were recorded ran GAR's own prompts


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
    _runs: dict[str, tuple[tuple, dict]] = field(default_factory=dict, repr=False)  # ref -> (stat key, row)
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


def frame_size(trace: Trace) -> dict:
    """{width, height} of the run's frame (the final state's image, else the recorded input)."""
    img = trace.final_state.image or trace.inputs.get("image")
    return {"width": img.width if img else 0, "height": img.height if img else 0}


def to_pixels(box: list[float], width: int, height: int) -> list[int]:
    """A normalised xyxy box in pixels of a width x height frame (inside the frame)."""
    px = [round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height)]
    return [min(max(v, 0), (width if i % 2 == 0 else height) - 1) for i, v in enumerate(px)]


# --------------------------------------------------------------------------- result documents


def result_json(result) -> dict | None:
    """A run's result as its JSON document, whether typed (gar_agent.result.RunResult) or a dict."""
    return result.model_dump(mode="json") if isinstance(result, RunResult) else result


def typed_result(result) -> RunResult | None:
    """A run's result as the typed RunResult (a sample file's is JSON, read as untrusted); None if it is not one."""
    if isinstance(result, RunResult) or result is None:
        return result
    try:
        return RunResult.model_validate(result)
    except ValidationError:
        return None


def _json(model) -> dict | None:
    return None if model is None else model.model_dump(mode="json")


def result_view(result) -> dict:
    """The fields of a run's result (gar_agent.result) the viewer shows, read in one place."""
    result = typed_result(result)
    if result is None:
        return {"sources": [], "calls": None, "wall_s": None, "error": None, "settings": {}}
    settings = result.settings.model_dump(mode="json")
    return {
        "sources": [
            {
                "box": s.box,
                "initial_box": s.initial_box,
                "audio_class": s.audio_class,
                "audio_confidence": s.audio_confidence,
                "refined": s.refined,
                "gate": _json(s.gate),
                "analysis": _json(s.analysis),
            }
            for s in result.sources
        ],
        "calls": result.usage.model_calls,
        "wall_s": result.usage.wall_s,
        "error": result.error,
        "settings": settings,
        "protocol": result.settings.protocol or DEFAULT_PROTOCOL,
    }


def run_summary(trace: Trace, ref: str) -> dict:
    """A runs-list row of a trace."""
    res = trace.result
    settings = trace.settings
    return {
        "ref": ref,
        "id": trace.run_id,
        "time": trace.created,
        "image": input_name(trace),
        "k": settings.sources,
        "n": settings.n_votes,
        "tau_av": settings.tau_av,
        "tau_audio": settings.tau_audio,
        "classes": [s.audio_class for s in res.sources if s.audio_class],
        # one word per run: failed, else what happened to its sources ("refined", "skipped", "2 refined")
        "status": "failed" if res.error is not None else _status_text([s.status for s in res.sources]),
        "graph": trace.graph.name,
        "protocol": protocol_of(trace),
        "boxes": [s.box for s in res.sources],
        "refined": res.refined,
        "calls": res.usage.model_calls,
        "wall_s": round(trace.wall_s, 3),
        "failed": res.error is not None,
        "run_error": res.error,
        "kind": "fork" if trace.fork else "replay" if trace.parent else "run",
    }


def input_name(trace: Trace) -> str:
    """What a run ran on, by name: the video and the time asked for, else the image file."""
    video = trace.inputs.get("video")
    if video is not None:
        at = "" if video.at_s is None else f" @ {video.at_s:g} s"
        return Path(video.path).name + at
    return Path(trace.inputs["image"].path).name if "image" in trace.inputs else ""


def _status_text(statuses: list[str]) -> str:
    words = {"skipped": "skipped", "not_refined": "not refined", "not_analysed": "not analysed"}
    counts: dict[str, int] = {}
    for st in statuses:
        w = words.get(st, st)
        counts[w] = counts.get(w, 0) + 1
    if not counts:
        return "no sources"
    return ", ".join(w if n == 1 and len(statuses) == 1 else f"{n} {w}" for w, n in counts.items())


def protocol_of(trace: Trace) -> str:
    """The prompt protocol a run used ("gar" for traces written before protocols were recorded)."""
    value = trace.settings.protocol or trace.result.settings.protocol
    return str(value) if value else DEFAULT_PROTOCOL


def sample_row(sid: str, doc: dict | None) -> dict:
    """A samples-table row of an evaluation (doc: from the eval store's read_sample)."""
    if doc is None:
        return {
            "id": sid,
            "unreadable": True,
            "failed": True,
            "error": "sample file is unreadable or half-written",
            "ciou": None,
            "ap": None,
            "matched_mean_iou": None,
            "refined": 0,
            "skipped": 0,
            "classes": [],
            "wall_s": None,
            "calls": None,
            "trace": None,
            "sources": [],
        }
    score = doc["score"]
    result = typed_result(doc.get("result"))
    res = result_view(result)
    return {
        "id": sid,
        "failed": bool(score.failed),
        "error": score.error,
        "ciou": doc.get("ciou"),
        "ap": doc.get("ap"),
        "matched_mean_iou": doc.get("matched_mean_iou"),
        "refined": score.refined,
        "skipped": score.skipped,
        # the benchmark's classes (ground truth), then the predicted ones: the class filter finds either
        "classes": list(
            dict.fromkeys([*doc.get("gt_classes", []), *(s["audio_class"] for s in res["sources"] if s["audio_class"])])
        ),
        "wall_s": doc.get("wall_s"),
        "calls": res["calls"],
        "trace": f"traces/{sid}" if doc.get("trace") else None,
        "sources": [
            {
                "av": s.analysis.av_consistency if s.analysis else None,
                "keep": s.analysis.keep if s.analysis else None,
                "audio_confidence": s.audio_confidence,
                "gate": _json(s.gate),
            }
            for s in (result.sources if result else [])
        ],
    }


def gate_stats(rows: list[dict], config: dict | None) -> dict:
    """How the gate decided over the evaluation: sources refined or skipped, and why."""
    settings = (config or {}).get("settings") or {}
    sources = [s for r in rows for s in r.get("sources", [])]
    gated = [s for s in sources if s["gate"]]
    reasons: dict[str, int] = {}
    for s in gated:
        for reason in s["gate"].get("reasons") or []:
            name = reason.split(" ")[0] if not reason.startswith("keep") else "keep is false"
            reasons[name] = reasons.get(name, 0) + 1
    avs = [s["av"] for s in gated if s["av"] is not None]
    confs = [s["audio_confidence"] for s in gated if s["audio_confidence"] is not None]
    return {
        "tau_av": settings.get("tau_av"),
        "tau_audio": settings.get("tau_audio"),
        "sources": len(sources),
        "gated": len(gated),
        "refine": sum(1 for s in gated if s["gate"].get("refine")),
        "skip": sum(1 for s in gated if not s["gate"].get("refine")),
        "reasons": reasons,
        "keep_rate": (sum(1 for s in gated if s["keep"]) / len(gated)) if gated else None,
        "mean_av": (sum(avs) / len(avs)) if avs else None,
        "mean_audio_confidence": (sum(confs) / len(confs)) if confs else None,
    }


# --------------------------------------------------------------------------- one run


def _record_fields(record: SourceRecord) -> dict:
    """The parts of a source record one step shows."""
    return {k: _json(getattr(record, k)) for k in ("analysis", "gate", "refinement")} | {"error": record.error}


def run_document(trace: Trace, ref: str, gt: list[list[int]] | None = None) -> dict:
    """Everything the run page shows: settings, graph and path, steps with their boxes, final state."""
    final = trace.final_state
    current: dict[int, list[int]] = {}  # source -> box as of the step being walked
    initial: dict[int, list[int]] = {}
    classes: dict[int, str] = {s.index: s.audio_class for s in final.sources}
    votes_seen: dict[int, int] = {}
    steps = []
    for step in trace.steps:
        update = step.update
        detail: dict = {"kind": "other"}
        refinement = None  # a Refine step's: the box before it is drawn too
        records = update.records()
        if isinstance(update, GenerateUpdate):
            gen = update.generate
            detail = {
                "kind": "generate",
                "audio": [a.model_dump(mode="json") for a in gen.audio],
                "boxes": [b.model_dump(mode="json") for b in gen.boxes],
                "pairing": gen.pairing,
                "sources": [
                    {
                        "index": s.index,
                        "initial_box": s.initial_box,
                        "description": s.description,
                        "audio_class": s.audio_class,
                        "audio_confidence": s.audio_confidence,
                    }
                    for s in update.sources
                ],
                "error": update.error,
            }
            for s in update.sources:
                initial[s.index] = current[s.index] = s.initial_box
                classes.setdefault(s.index, s.audio_class or "")
        elif records and step.source is not None:
            record = next((r for r in records if r.index == step.source), records[0])
            before = votes_seen.get(step.source, 0)
            votes_seen[step.source] = len(record.votes)
            detail = {
                "kind": step.node if step.node in ("analyze", "gate", "refine") else "source",
                "votes": [v.model_dump(mode="json") for v in record.votes],
                "new_votes": [v.index for v in record.votes[before:]],
                **_record_fields(record),
            }
            refinement = record.refinement if step.node == "refine" else None
            if record.box:
                current[step.source] = record.box
            initial.setdefault(step.source, record.initial_box)
        boxes = [
            {"kind": "initial", "source": i, "box": initial[i], "label": classes.get(i, "")}
            for i in sorted(initial)
            if initial[i]
        ]
        if refinement is not None and refinement.previous_box:
            boxes.append({"kind": "previous", "source": step.source, "box": refinement.previous_box, "label": ""})
        boxes += [
            {"kind": "current", "source": i, "box": current[i], "label": classes.get(i, "")} for i in sorted(current)
        ]
        boxes += [{"kind": "gt", "source": None, "box": box, "label": "GT"} for box in gt or []]
        steps.append(
            {
                "index": step.index,
                "node": step.node,
                "graph_node": graph_node(step.node, step.namespace),
                "source": step.source,
                "pass": step.pass_index,
                "elapsed_s": step.elapsed_s,
                "usage": step.usage.model_dump(),
                "calls": [c.model_dump(mode="json") for c in step.calls],
                "detail": detail,
                "state": step.state if detail["kind"] == "other" else None,
                "boxes": boxes,
            }
        )
    res = result_view(trace.result)
    final_boxes = []
    for i, src in enumerate(trace.result.sources):
        if src.initial_box:
            final_boxes.append({"kind": "initial", "source": i, "box": src.initial_box, "label": src.audio_class})
        if src.box:
            final_boxes.append({"kind": "final", "source": i, "box": src.box, "label": src.audio_class})
    for box in gt or []:
        final_boxes.append({"kind": "gt", "source": None, "box": box, "label": "GT"})
    path_nodes, path_edges = taken_path(trace.graph.edges, [(s["graph_node"], s["source"]) for s in steps])
    return {
        "ref": ref,
        "run_id": trace.run_id,
        "created": trace.created,
        "parent": trace.parent,
        "fork": trace.fork.model_dump() if trace.fork else None,
        "backend": trace.backend,
        "protocol": protocol_of(trace),
        "package_version": trace.package_version,
        "graph": {"name": trace.graph.name, "path": trace.graph.path, "sha256": trace.graph.sha256},
        "graph_svg": graph_svg(trace.graph.nodes, trace.graph.edges, path_nodes, path_edges),
        "settings": trace.settings.model_dump(mode="json"),
        "inputs": {k: {**v.model_dump(), "name": Path(v.path).name} for k, v in trace.inputs.items()},
        "image": frame_size(trace),
        "audio": final.audio.model_dump(mode="json") if final.audio else None,
        "notices": trace.notices,
        "steps": steps,
        "final": {"boxes": final_boxes, "error": res["error"], "sources": res["sources"]},
        "gt": gt,
        "result": result_json(trace.result),
        "usage": {"calls": res["calls"], "wall_s": trace.wall_s},
    }


def graph_node(node: str, namespace: list[str]) -> str:
    """The topology's node id of a step: a subgraph's nodes are `subgraph:node`."""
    if namespace:
        return f"{namespace[0].split(':')[0]}:{node}"
    return node


# --------------------------------------------------------------------------- two runs


def diff_document(a: Trace, b: Trace, ref_a: str, ref_b: str) -> dict:
    """Two runs side by side, with what `gar trace diff` finds different."""
    d = diff_traces(a, b)
    sides = []
    for trace, ref in ((a, ref_a), (b, ref_b)):
        res = result_view(trace.result)
        sides.append(
            {
                "ref": ref,
                "run_id": trace.run_id,
                "created": trace.created,
                "graph": trace.graph.name,
                "protocol": protocol_of(trace),
                "settings": trace.settings.model_dump(mode="json"),
                "image": frame_size(trace),
                "boxes": [
                    {"kind": "final", "source": i, "box": s.box, "label": s.audio_class}
                    for i, s in enumerate(trace.result.sources)
                    if s.box
                ],
                "error": res["error"],
                "calls": res["calls"],
                "wall_s": trace.wall_s,
            }
        )
    return {
        "a": sides[0],
        "b": sides[1],
        "same": d.same,
        "settings": [list(x) for x in d.settings],
        "answers": [list(x) for x in d.answers],
        "decisions": [list(x) for x in d.decisions],
        "boxes": [{"source": i, "a": ba, "b": bb, "iou": iou} for i, ba, bb, iou in d.boxes],
    }

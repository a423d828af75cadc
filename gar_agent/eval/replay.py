"""Replay a whole evaluation under another graph, prompt set, protocol, N or threshold.

Every sample of a source folder SRC runs again through the (new) graph; each model call is served
from SRC's recording of that sample when the same request was recorded (matched exactly as
`gar replay` matches, gar_agent.rerun.replay), and only the calls the recording lacks go to a
backend. Without a backend a sample that needs a new call is not written and is listed (with its
first missing call), so the same command with `--backend` finishes it: DST resumes like `gar eval run`.

DST is an ordinary evaluation folder (eval.json, samples/, traces/ naming their parent, vis/,
metrics.json) plus `replay.json`: the source folder and how many calls and tokens were reused and new.
A sample whose recorded run failed (or never ran: unreadable media) is carried over as recorded,
as `gar eval sweep` does: its failure is not a decision the replay can redo without the model;
`retry_failed` sends its calls to the backend instead.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from langchain_core.language_models import BaseChatModel

from gar_agent.eval.datasets import DATASETS
from gar_agent.eval.execute import _gt_items  # the GT drawing of `gar eval run`'s overlays, shared
from gar_agent.eval.score import metrics_document, score_result, write_metrics
from gar_agent.eval.store import (
    INTERNAL_ERROR,
    EvalDir,
    SettingsMismatch,
    check_folder,
    clean_partial_writes,
    eval_config,
    load_scores,
    read_config,
    read_sample,
    recorded_missing,
    sample_document,
    store_config,
)
from gar_agent.media import MediaError
from gar_agent.models.openai import is_backend_fault
from gar_agent.overlay import result_items, save_overlay
from gar_agent.prompts import PromptError, PromptSet, protocol_settings
from gar_agent.rerun.replay import replay_model, trace_media
from gar_agent.run import Lineage, run_and_record
from gar_agent.spec import BackendSpec, RunSpec, SpecError, backend_spec, build_spec
from gar_agent.state import RunState, Settings
from gar_agent.topology import GraphError, Topology, recorded_topology
from gar_agent.trace.spec_file import read_spec, write_spec
from gar_agent.trace.store import TraceError, atomic_write, read_trace

REPLAY_FILE = "replay.json"
REPLAY_BACKEND = "replay of "  # settings.backend of a replayed folder: "replay of <SRC, absolute>"


class ReplayError(SettingsMismatch):
    """A replay that cannot start (SRC unreadable, a graph that is not the recorded one); one line."""


@dataclass
class Changes:
    """What a replay changes; None keeps SRC's value."""

    graph: str | None = None
    prompts: str | Path | None = None
    protocol: str | None = None
    n_votes: int | None = None
    votes_per_call: int | None = None
    tau_av: float | None = None
    tau_audio: float | None = None


@dataclass
class ReplayPlan:
    """Everything a replay of SRC into DST shares: the new settings, graph and prompts, DST's eval.json."""

    src: EvalDir
    dst: EvalDir
    src_config: dict
    config: dict
    settings: Settings
    topology: Topology
    prompts: PromptSet
    notes: list[str] = field(default_factory=list)  # said once before the samples run
    src_spec: RunSpec | None = None  # SRC's spec.json (None: a folder from before run specs)
    spec: RunSpec | None = None  # DST's, once `prepare` knows the backend; each trace records it slim

    @property
    def ids(self) -> list[str]:
        return self.src.stored_ids()


def plan(src: str | Path, dst: str | Path, changes: Changes, fallback_name: str | None = None) -> ReplayPlan:
    """Read SRC, apply the changes, build DST's eval.json; ReplayError/SettingsMismatch (one line) if not."""
    s, d = EvalDir(Path(src)), EvalDir(Path(dst))
    if d.root.resolve() == s.root.resolve():
        raise ReplayError(f"--out {dst} is the source folder: give a new folder for the replay")
    src_config = read_config(s)
    rec = src_config["settings"]
    dataset = DATASETS[src_config["dataset"]]
    notes = []
    try:
        topology = recorded_topology(
            str(rec.get("graph", "gar")), str(rec.get("graph_sha256")), changes.graph, f"gar trace show {s.traces}/<id>"
        )
        recorded_prompts = rec.get("prompts_dir")
        if changes.prompts is not None:
            prompts = PromptSet(changes.prompts, benchmark=dataset.name)
        elif recorded_prompts and Path(recorded_prompts).is_dir():
            prompts = PromptSet(recorded_prompts, benchmark=dataset.name)
        else:
            prompts = PromptSet(None, benchmark=dataset.name)
            notes.append(f"the source's prompt set {recorded_prompts} is gone: the shipped prompts are used")
        if changes.prompts is None and rec.get("prompts") and prompts.hashes() != rec["prompts"]:
            notes.append(f"the prompts in {prompts.directory} changed since the source ran: changed requests are new")
        fixed = protocol_settings(prompts, changes.protocol or rec.get("protocol", "gar"), dataset.sources)
        known = set(Settings.model_fields)
        base = {k: v for k, v in rec.items() if k in known}
        base.update({k: v for k, v in vars(changes).items() if k in known and v is not None and k != "protocol"})
        settings = Settings.model_validate(
            {**base, **fixed, "graph": topology.name, "backend": REPLAY_BACKEND + str(s.root.resolve())}
        )
    except (GraphError, PromptError, ValueError) as e:
        raise ReplayError(str(e).splitlines()[0]) from None
    data = dict(src_config.get("data") or {})
    config = eval_config(dataset, settings, topology, prompts, rec.get("gt_boxes") or "first", data, rec.get("model"))
    config["replay"] = {"source": str(s.root.resolve()), "backend": fallback_name}
    src_spec = None
    if s.spec.is_file():
        try:
            src_spec = read_spec(s.spec)
        except SpecError as e:
            notes.append(f"{e}: the source's backend is not known (--backend recorded cannot rebuild it)")
    return ReplayPlan(s, d, src_config, config, settings, topology, prompts, notes, src_spec)


class _Counts(TypedDict):
    """A replayed sample's calls: served from its trace, forwarded to the backend (the document's `replay`)."""

    reused: int
    new: int
    reused_tokens: int
    new_tokens: int


@dataclass
class SampleOutcome:
    """How one sample went: its document (None: not written), its calls, the first missing call."""

    id: str
    doc: dict | None
    reused: int = 0
    new: int = 0
    reused_tokens: int = 0
    new_tokens: int = 0
    missing: str | None = None
    unavailable: str | None = None


def _carry_over(p: ReplayPlan, sid: str, doc: dict) -> SampleOutcome:
    """A sample that failed in SRC, as recorded (its trace copied so the viewer can open it)."""
    out = {k: v for k, v in doc.items() if k != "score"}
    out["score"] = doc["score"].model_dump(mode="json")
    if doc.get("trace") and p.src.trace(sid).is_file():
        p.dst.trace(sid).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p.src.trace(sid), p.dst.trace(sid))
        out["trace"] = f"traces/{sid}/trace.json"
    else:
        out["trace"] = None
    out["vis"] = None
    out["replay"] = {"carried_over": True}
    _write(p.dst, sid, out)
    return SampleOutcome(sid, out)


def _write(d: EvalDir, sid: str, doc: dict) -> None:
    d.samples.mkdir(parents=True, exist_ok=True)
    atomic_write(d.sample(sid), json.dumps(doc, separators=(",", ":")) + "\n")


def replay_sample(
    p: ReplayPlan, sid: str, fallback: BaseChatModel | None, vis: bool = True, retry_failed: bool = False
) -> SampleOutcome:
    """Replay one sample of SRC into DST (its sample file written last, atomically)."""
    start = time.perf_counter()
    doc = read_sample(p.src, sid)
    if doc is None:
        return SampleOutcome(sid, None, unavailable="its sample file in the source is unreadable")
    score = doc["score"]
    if doc.get("trace") is None or (score.failed and not (retry_failed and fallback is not None)):
        return _carry_over(p, sid, doc)
    try:
        trace_path = p.src.trace(sid)
        trace = read_trace(trace_path)
        media = trace_media(trace, trace_path)
    except (TraceError, MediaError) as e:
        return SampleOutcome(sid, None, unavailable=str(e))
    try:
        return _rerun(p, sid, doc, trace, media, fallback, vis, start)
    except Exception as e:  # our code or the graph raised on this sample: it fails alone, as in `gar eval run`
        text = "".join(traceback.format_exception(e))
        error = f"{INTERNAL_ERROR}{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        failed = score_result(sid, score.gt_boxes, None, error)
        out = sample_document(failed, None, time.perf_counter() - start, None, None, doc.get("gt_classes"))
        out["traceback"] = text
        _write(p.dst, sid, out)
        return SampleOutcome(sid, out)


def _rerun(p: ReplayPlan, sid: str, doc: dict, trace, media, fallback, vis: bool, start: float) -> SampleOutcome:
    """The sample's run again under the plan, answered from its recording (and `fallback`)."""
    score = doc["score"]
    model = replay_model(trace, fallback)  # one per sample: it serves each recorded answer once
    state = RunState(settings=p.settings, image=trace.final_state.image, audio=trace.final_state.audio)
    recorded = run_and_record(
        media,
        p.settings,
        model,
        topology=p.topology,
        prompts=p.prompts,
        trace_dir=p.dst.traces,
        thread_id=sid,
        state=state,
        inputs=trace.inputs,
        lineage=Lineage(parent=trace.run_id, backend=p.settings.backend),
        spec=p.spec.slim() if p.spec is not None else None,
    )
    counts = _Counts(
        reused=model.served, new=model.forwarded, reused_tokens=model.served_tokens, new_tokens=model.forwarded_tokens
    )
    if model.missing:  # not written: the same command with --backend runs it
        shutil.rmtree(p.dst.traces / sid, ignore_errors=True)
        return SampleOutcome(sid, None, missing=model.missing[0], **counts)
    result = recorded.outcome.result
    vis_ref = None
    if vis:
        vis_ref = f"vis/{sid}.jpg"
        items = result_items(result) + _gt_items(score.gt_boxes, media.image_info.width, media.image_info.height)
        save_overlay(media.image, items, p.dst.root / vis_ref)
    new_score = score_result(sid, score.gt_boxes, result)
    out = sample_document(
        new_score, result, time.perf_counter() - start, f"traces/{sid}/trace.json", vis_ref, doc.get("gt_classes")
    )
    out["replay"] = counts
    _write(p.dst, sid, out)
    return SampleOutcome(sid, out, **counts)


@dataclass
class ReplayReport:
    """A whole replay: what was reused and new, what needs the model, the metrics."""

    source: str
    n_samples: int
    replayed: int = 0  # run in this call (not resumed, not carried over)
    resumed: int = 0
    carried_over: int = 0
    reused: int = 0
    new: int = 0
    reused_tokens: int = 0
    new_tokens: int = 0
    needs_model: list[dict] = field(default_factory=list)  # {"id", "call"}
    unavailable: list[dict] = field(default_factory=list)  # {"id", "error"}
    wall_s: float = 0.0
    metrics: dict = field(default_factory=dict)  # metrics.json's document, set when the replay ends

    def as_json(self) -> dict:
        """replay.json."""
        out = {k: v for k, v in vars(self).items() if k != "metrics"}
        out["n_needs_model"], out["n_unavailable"] = len(self.needs_model), len(self.unavailable)
        out["samples_per_s"] = round(self.replayed / self.wall_s, 2) if self.wall_s > 0 else None
        return out


def _done(d: EvalDir, sid: str, retry_failed: bool) -> dict | None:
    """DST's document of a sample when it is finished (a resumed replay skips it), else None."""
    doc = read_sample(d, sid)
    if doc is None:
        return None
    failed = doc["score"].failed
    if (
        failed
        and not doc.get("replay", {}).get("carried_over")
        and (retry_failed or is_backend_fault(doc["score"].error))
    ):
        return None
    return doc


def prepare(p: ReplayPlan, backend: BackendSpec | None = None) -> bool:
    """Check DST (resume or new), write its eval.json and run spec; True when resuming.

    `backend` is the spec of the model answering what the recording lacks; without one the spec names
    the source's backend (every answer is then the recording's), or "recording" for a folder without a spec.
    """
    resumed = check_folder(p.dst, p.config)
    clean_partial_writes(p.dst)
    store_config(p.dst, p.config)  # again on a resume: the same settings, maybe a backend now given
    answering = backend or (p.src_spec.backend if p.src_spec else None)
    answering = answering or BackendSpec(name="recording", options={"parent": str(p.src.root.resolve())})
    rec = p.config["settings"]
    p.spec = build_spec(
        command="eval-replay", backend=answering, topology=p.topology, prompts=p.prompts, settings=p.settings,
        dataset=p.config["dataset"], gt_boxes=rec.get("gt_boxes"), data=p.config.get("data"),
        source=str(p.src.root.resolve()),
    )  # fmt: skip
    write_spec(p.dst.spec, p.spec)  # rewritten on a resume: a backend given now is the one that answers
    return resumed


def run_replay(
    p: ReplayPlan,
    fallback: BaseChatModel | None = None,
    *,
    workers: int = 1,
    vis: bool = True,
    strict: bool = False,
    retry_failed: bool = False,
    on_sample: Callable[[SampleOutcome], None] | None = None,
) -> ReplayReport:
    """Replay every sample of SRC not yet in DST, then write DST's metrics.json and replay.json.

    An interruption (Ctrl-C) leaves every finished sample written; the same call resumes.
    """
    ids = p.ids
    report = ReplayReport(str(p.src.root.resolve()), len(ids))
    todo = []
    for sid in ids:
        doc = _done(p.dst, sid, retry_failed)
        if doc is None:
            todo.append(sid)
        else:
            report.resumed += 1
            _count(report, doc.get("replay") or {})
    start = time.perf_counter()

    def one(sid: str) -> SampleOutcome:
        return replay_sample(p, sid, fallback, vis, retry_failed)

    def take(o: SampleOutcome) -> None:
        if o.unavailable:
            report.unavailable.append({"id": o.id, "error": o.unavailable})
        elif o.missing:
            report.needs_model.append({"id": o.id, "call": o.missing})
        elif o.doc is not None and o.doc.get("replay", {}).get("carried_over"):
            report.carried_over += 1
        else:
            report.replayed += 1
        _count(report, vars(o))
        if on_sample:
            on_sample(o)

    try:
        if workers <= 1:
            for sid in todo:
                take(one(sid))
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gar-replay") as pool:
                for o in pool.map(one, todo):
                    take(o)
    finally:
        report.wall_s = round(time.perf_counter() - start, 3)
        atomic_write(p.dst.root / REPLAY_FILE, json.dumps(report.as_json(), indent=1) + "\n")
    scores, _ = load_scores(p.dst, ids)
    report.metrics = metrics_document(scores, p.config, strict, recorded_missing(p.src))
    write_metrics(p.dst, report.metrics)
    return report


def _count(report: ReplayReport, c: dict) -> None:
    report.reused += int(c.get("reused") or 0)
    report.new += int(c.get("new") or 0)
    report.reused_tokens += int(c.get("reused_tokens") or 0)
    report.new_tokens += int(c.get("new_tokens") or 0)


def recorded_backend(p: ReplayPlan, model: str | None = None) -> tuple[BaseChatModel, BackendSpec]:
    """`--backend recorded`: the backend that made SRC built again, from its run spec (or, for a folder
    from before run specs, the backend its eval.json names). A `module:attr` backend is refused, as
    `gar replay --backend recorded` refuses it: building it would import code a folder names."""
    if model:
        raise ReplayError("--model goes with a backend name: --backend recorded uses the recorded model")
    if p.src_spec is not None:
        spec = p.src_spec.backend
    else:
        rec = p.src_config.get("settings") or {}
        name = str(rec.get("backend") or "").split(" --model ")[0].strip()
        if not name or name.startswith(REPLAY_BACKEND):
            raise ReplayError("the source records no backend to rebuild: give --backend NAME")
        spec = BackendSpec(name=name, model=rec.get("model"))
    return spec.build(), spec


def named_backend(name: str, model: str | None, options: dict) -> tuple[BaseChatModel, BackendSpec]:
    """`--backend NAME`: the model for what the recording lacks, and its spec."""
    from gar_agent.models.backends import resolve_backend

    chat = resolve_backend(name, model, **options)
    return chat, backend_spec(name, model, options, chat)

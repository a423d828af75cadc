"""Running a benchmark into an evaluation folder: the job built, the folder claimed, the samples run, the metrics written.

What `gar eval run` does, without the terminal: the command parses its options into an
`EvalRequest`, and shows what `run_benchmark` tells it (`EvalHooks`: the opening line, notes, each
finished sample). A run is resumable: the same request again runs only the samples without a file.
Everything the user can get wrong is an `EvalError` (one line); a run that stops early
(`--fail-fast`, every server down, Ctrl-C) is an `EvalStopped` that says how to go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gar_agent.errors import UserError
from gar_agent.eval.datasets import DATASETS, DatasetError, Sample
from gar_agent.eval.score import metrics_document, write_metrics
from gar_agent.eval.store import (
    EvalDir,
    FolderInUse,
    SettingsMismatch,
    check_folder,
    clean_partial_writes,
    eval_config,
    hold_folder,
    load_scores,
    split_done,
    store_config,
)
from gar_agent.prompts import PromptSet
from gar_agent.spec import build_spec
from gar_agent.state import Settings
from gar_agent.trace.spec_file import write_spec

# Running samples needs LangGraph, the media stack and the model's: imported when a run starts, so
# that `gar eval rescore`, `compare` and `--help` (which load this module with the CLI) stay quick.
if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from gar_agent.eval.execute import EvalJob
    from gar_agent.topology import Topology

DEFAULT_BACKEND = "qwen-omni"
DEFAULT_N = 5
EXIT_INTERRUPTED = 130


class EvalError(UserError):
    """A request that cannot run (missing options, unknown benchmark, a folder of other settings, ...)."""


class EvalStopped(Exception):
    """The run stopped before every sample was done; what finished is kept and the same request resumes.

    `interrupted`: Ctrl-C (exit 130), else a stop of the run itself (--fail-fast, servers down).
    `traceback_text`: the internal error behind a --fail-fast stop, to show before the message.
    """

    def __init__(self, message: str, interrupted: bool = False, traceback_text: str | None = None) -> None:
        super().__init__(message)
        self.interrupted, self.traceback_text = interrupted, traceback_text


@dataclass
class EvalRequest:
    """What decides a benchmark run, as the command's options give it."""

    dataset: str | None
    frames: Path | None
    audio: Path | None
    gt: Path | None
    out: Path
    backend: str | None = None
    model: str | None = None
    model_options: Callable[[str], dict] = field(default=lambda backend: {})
    """The backend's own options (served: URLs, retries; local: batch size), checked when the model is made."""
    graph: str | None = None
    prompts: Path | None = None
    protocol: str = "gar"
    n_votes: int = DEFAULT_N
    votes_per_call: int | None = None
    tau_av: float | None = None  # None: the benchmark's (the released scripts')
    tau_audio: float | None = None
    limit: int | None = None
    ids: list[str] | None = None
    workers: int = 1
    processes: int | None = None  # None: auto_processes
    strict: bool = False
    gt_boxes: str | None = None
    retry_failed: bool = False
    vis: bool = True
    fail_fast: bool = False


@dataclass
class EvalHooks:
    """How a run talks to whoever started it (the CLI prints; a notebook may ignore it)."""

    started: Callable[[EvalPlan, int, bool], None] = lambda plan, done, resumed: None
    """Once the folder is claimed: the plan, how many samples are already done, whether it resumes."""
    note: Callable[[str], None] = lambda text: None
    """Something worth a line (a flag that was ignored, and why)."""
    running: Callable[[int, list[dict]], contextlib.AbstractContextManager[Callable[[dict], None]]] = field(
        default=lambda total, done: contextlib.nullcontext(lambda doc: None)
    )
    """While the samples run: (total, documents already done) -> a context giving the per-sample callback."""


@dataclass
class EvalPlan:
    """A checked request: its samples, graph, prompts, settings and the folder's config."""

    request: EvalRequest
    benchmark: Any
    samples: list[Sample]
    missing: list[str]
    topology: Topology
    prompts: PromptSet
    settings: Settings
    config: dict
    folder: EvalDir
    resumed: bool
    data: dict = field(default_factory=dict)
    gt_boxes: str | None = None  # VGG-SS: first | union; None for the other benchmarks


@dataclass
class EvalOutcome:
    """A finished run: the metrics document (also written to OUT/metrics.json)."""

    plan: EvalPlan
    metrics: dict


def plan_benchmark(req: EvalRequest) -> EvalPlan:
    """Check a request and load what it names (no model yet); EvalError if it cannot run."""
    dataset, frames, audio, gt = req.dataset, req.frames, req.audio, req.gt
    if dataset is None or frames is None or audio is None or gt is None:
        given = (("--dataset", dataset), ("--frames", frames), ("--audio", audio), ("--gt", gt))
        raise EvalError(f"a run needs {', '.join(f for f, v in given if v is None)} (see gar eval --help)")
    if req.gt_boxes is not None and req.gt_boxes not in ("first", "union"):
        raise EvalError(f"--gt-boxes {req.gt_boxes!r}: use first or union")
    if dataset not in DATASETS:
        raise EvalError(str(DATASETS.error(dataset)))
    benchmark = DATASETS[dataset]
    if req.gt_boxes == "union" and dataset != "vggss-single":
        raise EvalError(f"--gt-boxes union is for vggss-single (VGG-SS box lists); {dataset} has one box per source")
    for flag, place in (("--frames", frames), ("--audio", audio)):
        if not place.is_dir():
            raise EvalError(f"{flag} folder {place} not found: give the folder of the benchmark's {flag[2:]}")
    options = {"gt_boxes": req.gt_boxes or "first"} if req.dataset == "vggss-single" else {}
    try:
        samples, missing = benchmark.loader(req.gt, req.frames, req.audio, ids=req.ids, limit=req.limit, **options)
    except DatasetError as e:
        raise EvalError(str(e)) from None
    if not samples:
        why = (
            f"{len(missing)} id(s) lack a frame in {req.frames} or audio in {req.audio}"
            if missing
            else "no id selected"
        )
        raise EvalError(f"nothing to evaluate: {why}")
    from gar_agent.topology import load_topology

    backend = req.backend or DEFAULT_BACKEND
    try:
        topology = load_topology(req.graph or "gar")
        prompts = PromptSet(req.prompts, benchmark=req.dataset)
        settings = Settings.from_options(
            prompts,
            req.protocol,
            backend,
            req.model,
            graph=topology.name,
            sources=benchmark.sources,
            n_votes=req.n_votes,
            votes_per_call=req.votes_per_call,
            tau_av=benchmark.tau_av if req.tau_av is None else req.tau_av,
            tau_audio=benchmark.tau_audio if req.tau_audio is None else req.tau_audio,
        )
        folder = EvalDir(req.out)
        data = {"frames": str(req.frames), "audio": str(req.audio), "gt": str(req.gt)}
        config = eval_config(benchmark, settings, topology, prompts, options.get("gt_boxes", "first"), data, req.model)
        resumed = check_folder(folder, config)
    except SettingsMismatch as e:
        raise EvalError(str(e)) from None
    return EvalPlan(
        req, benchmark, samples, missing, topology, prompts, settings, config, folder, resumed, data,
        options.get("gt_boxes"),
    )  # fmt: skip


def run_benchmark(
    req: EvalRequest, hooks: EvalHooks | None = None, resolve: Callable[..., BaseChatModel] | None = None
) -> EvalOutcome:
    """Run (or resume) a benchmark into req.out and write its metrics.

    `resolve(backend, model, **options)` makes the chat model (default: the backend registry's);
    it is made once, shared by every sample, and only when a sample is left to run.
    """
    hooks = hooks or EvalHooks()
    plan = plan_benchmark(req)
    d = plan.folder
    with contextlib.ExitStack() as held:
        try:  # one process per folder: a second run would compute every sample again
            held.enter_context(hold_folder(d.root))
        except FolderInUse as e:
            raise EvalError(str(e)) from None
        clean_partial_writes(d)
        todo, done = split_done(d, plan.samples, req.retry_failed)
        hooks.started(plan, len(done), plan.resumed)
        if todo:
            job, workers, processes = _job(plan, hooks, resolve)
            _run_samples(job, todo, done, workers, processes, hooks)
        scores, unreadable = load_scores(d, [s.id for s in plan.samples])
        if unreadable:  # a sample file vanished or was damaged while we ran: never count it half
            raise EvalError(
                f"{len(unreadable)} sample file(s) unreadable after the run (e.g. {unreadable[0]}): run the same command again"
            )
        metrics = metrics_document(scores, plan.config, req.strict, plan.missing)
        write_metrics(d, metrics)
    return EvalOutcome(plan, metrics)


def _job(plan: EvalPlan, hooks: EvalHooks, resolve) -> tuple[EvalJob, int, int]:
    """The model (made once, shared by every sample and worker), the run spec, and how many run at once."""
    from gar_agent.eval.execute import EvalJob, auto_processes

    req = plan.request
    backend = req.backend or DEFAULT_BACKEND  # the name (settings.backend also names the --model)
    if resolve is None:
        from gar_agent.models.backends import resolve_backend as resolve
    options = req.model_options(backend)
    chat = resolve(backend, req.model, **options)
    serves = getattr(chat, "concurrent_samples", None)  # how many samples it usefully serves at once (None: any)
    processes = auto_processes(chat, req.workers) if req.processes is None else req.processes
    if processes > 1 and serves is not None:
        raise EvalError(f"--processes {processes}: {backend} runs on one device in this process; use --batch-size")
    run_spec = build_spec(
        command="eval", backend=backend, model=req.model, options=options, chat=chat,
        topology=plan.topology, prompts=plan.prompts, settings=plan.settings,
        dataset=req.dataset, gt_boxes=plan.gt_boxes, data=plan.data,
    )  # fmt: skip
    if not plan.resumed:  # only now: a backend typo must not leave a folder claimed by the typo
        store_config(plan.folder, plan.config)
    if not plan.folder.spec.is_file():  # once per folder: a resume (same settings, checked) keeps the first
        write_spec(plan.folder.spec, run_spec)
    workers = req.workers
    if serves is not None and serves > 1:
        workers = max(workers, serves)  # B clips in one generate need B samples in flight (the model's batcher)
    elif serves == 1 and workers > 1:
        hooks.note(
            f"the model runs one sample at a time (--workers {workers} ignored); --batch-size B runs B samples as one batch"
        )
        workers = 1
    job = EvalJob(
        plan.folder, plan.settings, chat, plan.topology, plan.prompts, vis=req.vis, spec=run_spec.slim(),
        fail_fast=req.fail_fast,
    )  # fmt: skip
    return job, workers, processes


def _run_samples(job: EvalJob, todo: list[Sample], done: list[dict], workers: int, processes: int, hooks) -> None:
    from gar_agent.eval.execute import SampleCrash, ServersDown, fewer_gc_pauses, run_in_processes, run_samples

    total = len(todo) + len(done)

    def finished() -> int:  # counted on disk: other workers may have finished samples meanwhile
        return len(done) + len(set(job.d.stored_ids()) & {s.id for s in todo})

    try:
        with hooks.running(total, done) as on_done, fewer_gc_pauses():
            processes = min(processes, workers)  # W in flight in all: ceil(W / P) threads in each process
            if processes > 1:
                run_in_processes(job, todo, processes, -(-workers // processes), on_done)
            else:
                run_samples(job, todo, workers, on_done)
    except SampleCrash as e:
        raise EvalStopped(
            f"stopped: {e} ({finished()} finished samples are kept: fix it and run the same command, "
            "with --retry-failed to redo a sample recorded as failed)",
            traceback_text=e.traceback_text,
        ) from None
    except ServersDown as e:
        raise EvalStopped(
            f"{e}; stopped after {finished()} of {total} samples (kept): run the same command again "
            "once a server is back (samples that failed on the servers are retried)"
        ) from None
    except KeyboardInterrupt:
        raise EvalStopped(
            f"interrupted after {finished()} of {total} samples: run the same command again to resume", interrupted=True
        ) from None

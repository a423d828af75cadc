"""`gar eval`: run a benchmark (resumable), rescore a finished folder, or sweep the gate without a model."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from gar_agent.cli.common import (
    EXIT_RUN_FAILED,
    USER_ERRORS,
    Backend,
    GraphOpt,
    MaxPixelsOpt,
    ModelOpt,
    NVotesOpt,
    PromptsOpt,
    ProtocolOpt,
    TauAudioOpt,
    TauAvOpt,
    VotesPerCallOpt,
    check_votes,
    console,
    err,
    fail,
    with_pixel_limit,
)
from gar_agent.cli.local_model import BatchSizeOpt, PrefixCacheOpt, local_options
from gar_agent.cli.serving import (
    ApiKeyEnvOpt,
    BaseUrlOpt,
    MaxResponseBytesOpt,
    MaxRetriesOpt,
    RequestTimeoutOpt,
    RetryBackoffOpt,
    served_options,
)
from gar_agent.eval.datasets import DATASETS, DatasetError
from gar_agent.eval.gt_formats import GT_FORMATS, help_text
from gar_agent.eval.metrics import success_rate
from gar_agent.eval.run import DEFAULT_BACKEND, DEFAULT_N, EvalHooks, EvalRequest, EvalStopped, run_benchmark
from gar_agent.eval.score import rescore
from gar_agent.eval.store import EvalDir, SettingsMismatch, read_config
from gar_agent.models.backends import resolve_backend
from gar_agent.models.openai import is_backend_fault

if TYPE_CHECKING:
    from gar_agent.eval.run import EvalPlan

ProcessesOpt = Annotated[
    Optional[int],
    typer.Option(
        min=1,
        max=64,
        help="Processes sharing the samples (W in flight in all). Default: with a served model, one per "
        "16 samples in flight, at most one per CPU (one process's Python is the client's limit); else 1.",
    ),
]
StrictOpt = Annotated[bool, typer.Option(help="Count failed samples as misses instead of leaving them out.")]
GtBoxesOpt = Annotated[Optional[str], typer.Option(help="VGG-SS GT: first (GAR) | union (LVS); default first.")]
SHOWN_FAILURES = 20  # failed samples listed one per line after a run; metrics.json lists them all
FailFastOpt = Annotated[
    bool,
    typer.Option(
        help="Stop at the first sample that fails on bad input or an internal error (default: fail it, go on, exit 1)."
    ),
]
# Options `gar eval run` and the older `gar eval --out` share, defined once. The older form differs only
# where it must: its --dataset/--frames/--audio/--gt/--out are optional (it is also --rescore and
# --sweep), and its --n-votes/--tau-av/--tau-audio are text (a list for --sweep).
FramesOpt = typer.Option(help="Folder of frames <id>.jpg.")
AudioOpt = typer.Option(help="Folder of audio <id>.wav.")
LimitOpt = Annotated[Optional[int], typer.Option(min=1, help="Only the first K runnable samples (annotation order).")]
IdsOpt = Annotated[Optional[Path], typer.Option(help="Only the ids listed in this file (one per line).")]
WorkersOpt = Annotated[
    int, typer.Option(min=1, max=256, help="Samples in flight at once (for backends serving concurrent requests).")
]
RetryFailedOpt = Annotated[bool, typer.Option(help="On resume, run again the samples whose stored run failed.")]
VisOpt = Annotated[bool, typer.Option(help="Write vis/<id>.jpg (prediction and GT drawn).")]
METRIC_COLUMNS = [("ciou@0.3", "cIoU@0.3"), ("ciou@0.5", "cIoU@0.5"), ("auc", "AUC"), ("ap", "AP"), ("piap", "PIAP")]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _values(text: str | None, flag: str, kind: type, lo: float, hi: float) -> list | None:
    """A comma-separated list of numbers in [lo, hi] (a single value is a list of one)."""
    if text is None:
        return None
    try:
        vals = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise fail(f"{flag} {text!r}: give a number or a comma-separated list, e.g. {flag} 0.3,0.5,0.7") from None
    if not vals:
        raise fail(f"{flag} is empty: give a value")
    bad = [v for v in vals if not lo <= v <= hi]
    if bad:
        raise fail(f"{flag} {bad[0]}: must be between {lo:g} and {hi:g}")
    return vals


def _one(text: str | None, flag: str, kind: type, lo: float, hi: float):
    vals = _values(text, flag, kind, lo, hi)
    if vals is not None and len(vals) != 1:
        raise fail(f"{flag} {text!r}: a run takes one value (lists are for --sweep)")
    return None if vals is None else vals[0]


def _read_ids(path: Path) -> list[str]:
    """One id per line; blank lines and # comments ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise fail(f"--ids {path} cannot be read ({type(e).__name__}): give a text file of sample ids") from None
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def metrics_table(metrics: dict, title: str) -> Table:
    """The benchmark numbers (percentages) and counts."""
    table = Table(title=title)
    cols = METRIC_COLUMNS + ([("matched_mean_iou", "matched IoU")] if "matched_mean_iou" in metrics else [])
    for _, label in cols:
        table.add_column(label, justify="right")
    for label in ("evaluated", "failed", "refined", "skipped"):
        table.add_column(label, justify="right")
    table.add_row(
        *(_pct(metrics.get(k)) for k, _ in cols),
        f"{metrics['n_evaluated']}/{metrics['n_total']}",
        str(metrics["n_failed"]),
        str(metrics["refined"]),
        str(metrics["skipped"]),
    )
    return table


def _report(d: EvalDir, metrics: dict, title: str) -> None:
    console.print(metrics_table(metrics, title))
    notes = []
    if metrics.get("n_missing"):
        shown = ", ".join(metrics["missing"][:5]) + (" ..." if metrics["n_missing"] > 5 else "")
        notes.append(f"{metrics['n_missing']} id(s) without frame or audio, not run: {shown}")
    if metrics["n_failed"]:
        how = "counted as misses (--strict)" if metrics["strict"] else "left out of the metrics (--strict counts them)"
        notes.append(f"{metrics['n_failed']} failed sample(s) {how}:")
        # one line each (the first SHOWN_FAILURES): what failed it is in its error; all are in metrics.json
        notes += [f"  {f['id']}: {f['error']}" for f in metrics["failed"][:SHOWN_FAILURES]]
        if metrics["n_failed"] > SHOWN_FAILURES:
            notes.append(f"  ... and {metrics['n_failed'] - SHOWN_FAILURES} more (listed in {d.metrics.name})")
    for note in notes:
        console.print(note, markup=False, soft_wrap=True)
    console.print(f"wrote {d.metrics}", markup=False, soft_wrap=True)


def _note_backend_faults(metrics: dict) -> None:
    """Say how many samples failed because the server did: the same command runs them again."""
    faults = [f for f in metrics["failed"] if is_backend_fault(f["error"])]
    if faults:
        first = faults[0]
        err.print(
            f"gar: note: {len(faults)} sample(s) failed on a backend fault (e.g. {first['id']}: {first['error']}); "
            "run the same command again to retry them",
            markup=False,
            soft_wrap=True,
        )


def _exit_for(metrics: dict, errors_fail: bool = False) -> None:
    """Exit 1 when every sample failed, or (a run: `errors_fail`) when any failed on its input or on an
    internal error: those are not the method's outcome, and a script must not take the numbers as
    complete. A failure of the model's answers is the benchmark's own result (exit 0)."""
    if metrics["n_total"] and metrics["n_failed"] == metrics["n_total"]:
        raise fail(f"every sample failed ({metrics['n_failed']}); see {metrics['failed'][0]['error']}", EXIT_RUN_FAILED)
    errors = [f for f in metrics["failed"] if f.get("kind") in ("input", "internal")]
    if errors_fail and errors:
        internal = sum(f["kind"] == "internal" for f in errors)
        raise fail(
            f"{len(errors)} sample(s) failed on bad input ({len(errors) - internal}) or an internal error "
            f"({internal}), listed above ({', '.join(f['id'] for f in errors[:5])}{' ...' if len(errors) > 5 else ''}); "
            "an internal error's traceback is in its sample file; fix them and run again with --retry-failed",
            EXIT_RUN_FAILED,
        )


def _given(**options) -> list[str]:
    return ["--" + k.replace("_", "-") for k, v in options.items() if v not in (None, False)]


eval_app = typer.Typer(
    help="Benchmarks: gar eval run | rescore | sweep (the older --out/--rescore/--sweep spellings still work).",
    invoke_without_command=True,
    rich_markup_mode=None,
)


@eval_app.callback()
@with_pixel_limit
def eval_command(
    ctx: typer.Context,
    dataset: Annotated[Optional[str], typer.Option(help=f"Benchmark: {', '.join(DATASETS)}.")] = None,
    frames: Annotated[Optional[Path], FramesOpt] = None,
    audio: Annotated[Optional[Path], AudioOpt] = None,
    gt: Annotated[
        Optional[Path],
        typer.Option(help="Ground-truth file of the benchmark (with --rescore: re-read GT boxes from it)."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option(help="Evaluation folder to write (run again to resume).")] = None,
    backend: Annotated[
        Optional[str], typer.Option(help="qwen-omni | openai | scripted:FILE | module:attr (default qwen-omni).")
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="Checkpoint for qwen-omni: hub id or local dir.")] = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    max_retries: MaxRetriesOpt = None,
    request_timeout: RequestTimeoutOpt = None,
    retry_backoff: RetryBackoffOpt = None,
    max_response_bytes: MaxResponseBytesOpt = None,
    graph: Annotated[
        Optional[str], typer.Option(help="Topology: a name in graphs/ or a .py file (default gar).")
    ] = None,
    prompts: Annotated[
        Optional[Path],
        typer.Option(help="Prompt set, or the root of `gar prompts import` (the dataset's set is picked)."),
    ] = None,
    protocol: ProtocolOpt = "gar",
    n_votes: Annotated[
        Optional[str], typer.Option(help="N votes per source (default 5); --sweep: a list, e.g. 3,5.")
    ] = None,
    votes_per_call: VotesPerCallOpt = None,
    tau_av: Annotated[
        Optional[str], typer.Option(help="Gate threshold on av_consistency (default: the dataset's); --sweep: a list.")
    ] = None,
    tau_audio: Annotated[
        Optional[str],
        typer.Option(help="Gate threshold on audio confidence (default: the dataset's); --sweep: a list."),
    ] = None,
    limit: LimitOpt = None,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    processes: ProcessesOpt = None,
    batch_size: BatchSizeOpt = 1,
    prefix_cache: PrefixCacheOpt = True,
    strict: StrictOpt = False,
    gt_boxes: GtBoxesOpt = None,
    retry_failed: RetryFailedOpt = False,
    vis: VisOpt = True,
    max_pixels: MaxPixelsOpt = None,
    fail_fast: FailFastOpt = False,
    rescore_dir: Annotated[
        Optional[Path], typer.Option("--rescore", help="Recompute OUT/metrics.json from the stored samples (no model).")
    ] = None,
    sweep_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--sweep",
            help="Re-decide the gate of OUT's recorded runs for a grid of --tau-av/--tau-audio/--n-votes (no model).",
        ),
    ] = None,
) -> None:
    """Evaluate a benchmark: per-sample results, traces and overlays, then cIoU / AUC / AP / PIAP.

    `gar eval run ...`, `gar eval rescore OUT`, `gar eval sweep OUT`; the options given here directly
    (`gar eval --out DIR ...`, `--rescore OUT`, `--sweep OUT`) are the older spelling of the same.
    """
    if ctx.invoked_subcommand is not None:
        return  # the subcommand's own options apply
    options = {k: v for k, v in locals().items() if k not in ("rescore_dir", "sweep_dir", "ctx")}
    modes = [m for m, v in (("--out", out), ("--rescore", rescore_dir), ("--sweep", sweep_dir)) if v is not None]
    if len(modes) != 1:
        raise fail(
            "give one of --out DIR (run a benchmark), --rescore OUT (recompute metrics) or --sweep OUT (gate sweep)"
            + (f", not {' and '.join(modes)}" if modes else "")
        )
    if gt_boxes is not None and gt_boxes not in ("first", "union"):
        raise fail(f"--gt-boxes {gt_boxes!r}: use first or union")
    if out is None:
        extra = _given(
            frames=frames,
            audio=audio,
            backend=backend,
            model=model,
            base_url=base_url or None,
            api_key_env=api_key_env,
            max_retries=max_retries,
            request_timeout=request_timeout,
            retry_backoff=retry_backoff,
            max_response_bytes=max_response_bytes,
            graph=graph,
            prompts=prompts,
            protocol=protocol if protocol != "gar" else None,
            votes_per_call=votes_per_call,
            limit=limit,
            ids=ids,
            dataset=dataset,
            retry_failed=retry_failed,
            max_pixels=max_pixels,
            fail_fast=fail_fast,
        )
        if sweep_dir is not None and gt is not None:
            extra.append("--gt")
        if rescore_dir is not None:
            extra += _given(tau_av=tau_av, tau_audio=tau_audio, n_votes=n_votes)
        if extra:
            raise fail(f"{extra[0]} is for a run (--out), not for {modes[0]}")
        if rescore_dir is not None:
            return _rescore(EvalDir(rescore_dir), strict, gt, gt_boxes)
        if gt_boxes is not None:
            raise fail("--gt-boxes is for a run or --rescore, not for --sweep")
        assert sweep_dir is not None  # the one mode given, as neither --out nor --rescore was
        return _sweep(EvalDir(sweep_dir), tau_av, tau_audio, n_votes, strict)
    options.update(
        n_votes=_one(n_votes, "--n-votes", int, 1, 64) or DEFAULT_N,
        tau_av=_one(tau_av, "--tau-av", float, 0.0, 1.0),
        tau_audio=_one(tau_audio, "--tau-audio", float, 0.0, 1.0),
    )
    _run(**options)


DATASET_HELP = "Benchmark (its --gt file): " + ", ".join(f"{n} ({f.file})" for n, f in GT_FORMATS.items()) + "."
GT_HELP = (
    "The benchmark's annotation file, a JSON list: vggss-single [x1,y1,x2,y2] box lists, music-solo one "
    "[x,y,w,h], music-duet [x,y,w,h] per source, vggss-duet [x1,y1,x2,y2] per source (formats and "
    "examples below; `gar data example DIR` writes a tiny one)."
)


@eval_app.command("run", epilog=help_text())
@with_pixel_limit
def run_command(
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)],
    frames: Annotated[Path, FramesOpt],
    audio: Annotated[Path, AudioOpt],
    gt: Annotated[Path, typer.Option(help=GT_HELP)],
    out: Annotated[Path, typer.Option(help="Evaluation folder to write (run the same command again to resume).")],
    backend: Backend = DEFAULT_BACKEND,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    api_key_env: ApiKeyEnvOpt = None,
    max_retries: MaxRetriesOpt = None,
    request_timeout: RequestTimeoutOpt = None,
    retry_backoff: RetryBackoffOpt = None,
    max_response_bytes: MaxResponseBytesOpt = None,
    graph: GraphOpt = "gar",
    prompts: PromptsOpt = None,
    protocol: ProtocolOpt = "gar",
    n_votes: NVotesOpt = DEFAULT_N,
    votes_per_call: VotesPerCallOpt = None,
    tau_av: TauAvOpt = None,
    tau_audio: TauAudioOpt = None,
    limit: LimitOpt = None,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    processes: ProcessesOpt = None,
    batch_size: BatchSizeOpt = 1,
    prefix_cache: PrefixCacheOpt = True,
    strict: StrictOpt = False,
    gt_boxes: GtBoxesOpt = None,
    retry_failed: RetryFailedOpt = False,
    vis: VisOpt = True,
    max_pixels: MaxPixelsOpt = None,
    fail_fast: FailFastOpt = False,
) -> None:
    """Run a benchmark into OUT (resumable); thresholds default to the dataset's (the released scripts')."""
    _run(**locals())


@eval_app.command("rescore")
def rescore_command(
    out: Annotated[Path, typer.Argument(help="A gar eval folder.")],
    strict: StrictOpt = False,
    gt: Annotated[Optional[Path], typer.Option(help="Re-read the GT boxes from this annotation file.")] = None,
    gt_boxes: GtBoxesOpt = None,
) -> None:
    """Recompute OUT/metrics.json from the stored samples (no model, no media)."""
    if gt_boxes is not None and gt_boxes not in ("first", "union"):
        raise fail(f"--gt-boxes {gt_boxes!r}: use first or union")
    _rescore(EvalDir(out), strict, gt, gt_boxes)


@eval_app.command("sweep")
def sweep_command(
    out: Annotated[Path, typer.Argument(help="A gar eval folder whose runs were recorded.")],
    tau_av: Annotated[Optional[str], typer.Option(help="Values of tau_av, e.g. 0.3,0.5,0.7.")] = None,
    tau_audio: Annotated[Optional[str], typer.Option(help="Values of tau_audio, e.g. 0.5,0.75.")] = None,
    n_votes: Annotated[Optional[str], typer.Option(help="Values of N, e.g. 3,5 (at most the recorded N).")] = None,
    strict: StrictOpt = False,
    graph: Annotated[
        Optional[str],
        typer.Option(
            help="Topology to replay with: a shipped name or a .py file you trust (it runs). Default: the shipped "
            "graph whose sha256 the folder recorded; a file an eval folder names is never run."
        ),
    ] = None,
) -> None:
    """Re-decide the gate of every recorded sample for a grid of thresholds and N (no model)."""
    _sweep(EvalDir(out), tau_av, tau_audio, n_votes, strict, graph)


def _run(
    *,
    dataset,
    frames,
    audio,
    gt,
    out,
    backend,
    model,
    base_url,
    api_key_env,
    max_retries,
    request_timeout,
    retry_backoff,
    max_response_bytes,
    graph,
    prompts,
    protocol,
    n_votes,
    votes_per_call,
    tau_av,
    tau_audio,
    limit,
    ids,
    workers,
    processes,
    batch_size,
    prefix_cache,
    strict,
    gt_boxes,
    retry_failed,
    vis,
    max_pixels=None,  # applied by with_pixel_limit around the command
    fail_fast=False,
) -> None:
    """Parse what the options say into an EvalRequest; gar_agent.eval.run does the rest; show and exit."""
    check_votes(n_votes, votes_per_call)

    def model_options(name: str) -> dict:
        serving = served_options(
            name, base_url, api_key_env, max_retries, request_timeout, retry_backoff, max_response_bytes
        )
        return {**serving, **local_options(name, prefix_cache, batch_size)}

    request = EvalRequest(
        dataset=dataset, frames=frames, audio=audio, gt=gt, out=out, backend=backend, model=model,
        model_options=model_options, graph=graph, prompts=prompts, protocol=protocol, n_votes=n_votes,
        votes_per_call=votes_per_call, tau_av=tau_av, tau_audio=tau_audio, limit=limit,
        ids=_read_ids(ids) if ids is not None else None, workers=workers, processes=processes, strict=strict,
        gt_boxes=gt_boxes, retry_failed=retry_failed, vis=vis, fail_fast=fail_fast,
    )  # fmt: skip
    hooks = EvalHooks(started=_started, note=_note, running=_progress)
    try:
        done = run_benchmark(request, hooks, resolve=resolve_backend)
    except EvalStopped as e:
        if e.traceback_text:  # --fail-fast on an internal error: where it raised (a bug is never a one-liner)
            sys.stderr.write(e.traceback_text)
        raise fail(str(e), 130 if e.interrupted else EXIT_RUN_FAILED) from None
    except USER_ERRORS as e:
        raise fail(str(e)) from None
    _report(done.plan.folder, done.metrics, f"{dataset} · {out}")
    _note_backend_faults(done.metrics)
    _exit_for(done.metrics, errors_fail=True)


def _started(plan: EvalPlan, n_done: int, resumed: bool) -> None:
    req, s = plan.request, plan.settings
    console.rule(
        f"gar eval · {req.dataset} · {len(plan.samples)} samples · K={s.sources} N={s.n_votes} "
        f"tau_av={s.tau_av:g} tau_audio={s.tau_audio:g} · graph {plan.topology.name} · {s.backend}"
    )
    if resumed:
        console.print(
            f"resuming {req.out}: {n_done} of {len(plan.samples)} samples already done", markup=False, soft_wrap=True
        )


def _note(text: str) -> None:
    err.print(f"gar: note: {text}", markup=False, soft_wrap=True)


@contextlib.contextmanager
def _progress(total: int, done: list[dict]):
    """A progress bar while the samples run: samples a minute, and the running cIoU@0.5."""
    cious = [doc["ciou"] for doc in done if doc["ciou"] is not None]
    new = 0
    start = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    )

    def info() -> str:
        rate = new / max(time.perf_counter() - start, 1e-9) * 60
        running = _pct(success_rate(cious, 0.5)) if cious else "-"
        return f"{rate:.1f} samples/min · cIoU@0.5 {running}"

    task = progress.add_task("eval", total=total, completed=len(done), info=info())

    def on_done(doc: dict) -> None:
        nonlocal new
        new += 1
        if doc["ciou"] is not None:
            cious.append(doc["ciou"])
        progress.update(task, advance=1, info=info())

    with progress:
        yield on_done


def _rescore(d: EvalDir, strict: bool, gt: Path | None, gt_boxes: str | None) -> None:
    try:
        config = read_config(d)
        boxes = None
        if gt is not None:
            spec = DATASETS[config["dataset"]]
            options = {"gt_boxes": gt_boxes or "first"} if spec.name == "vggss-single" else {}
            if gt_boxes == "union" and not options:
                raise fail(f"--gt-boxes union is for vggss-single; this folder is {spec.name}")
            samples, _ = spec.loader(gt, Path("."), Path("."), require_files=False, **options)
            boxes = {s.id: s.gt_boxes for s in samples}
        elif gt_boxes is not None:
            raise fail(
                "GT boxes are stored per sample as the run read them: give --gt FILE to re-read them with --gt-boxes"
            )
        done = rescore(d, strict, boxes, gt_boxes)
    except (SettingsMismatch, DatasetError) as e:
        raise fail(str(e)) from None
    if done.unreadable:
        err.print(
            f"gar: note: {len(done.unreadable)} unreadable sample file(s) left out, e.g. {done.unreadable[0]}",
            markup=False,
            soft_wrap=True,
        )
    if done.no_gt:
        err.print(
            f"gar: note: {len(done.no_gt)} stored sample(s) not in {gt}, left out, e.g. {done.no_gt[0]}",
            markup=False,
            soft_wrap=True,
        )
    _report(d, done.metrics, f"rescore · {config['dataset']} · {d.root}")
    _exit_for(done.metrics)


def _sweep(d: EvalDir, tau_av, tau_audio, n_votes, strict: bool, graph: str | None = None) -> None:
    from gar_agent.eval.sweep import grid, sweep, write_sweep
    from gar_agent.topology import GraphError

    try:
        rec = read_config(d)
    except SettingsMismatch as e:
        raise fail(str(e)) from None
    s = rec["settings"]
    settings = grid(
        _values(tau_av, "--tau-av", float, 0.0, 1.0) or [s["tau_av"]],
        _values(tau_audio, "--tau-audio", float, 0.0, 1.0) or [s["tau_audio"]],
        _values(n_votes, "--n-votes", int, 1, 64) or [s["n_votes"]],
    )
    n_samples = len(EvalDir(d.root).stored_ids())
    progress = Progress(
        TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
    )
    task = progress.add_task("sweep", total=n_samples)
    try:
        with progress:
            report = sweep(d, settings, strict, on_sample=lambda sid: progress.advance(task), graph=graph)
    except GraphError as e:
        raise fail(str(e)) from None
    path = write_sweep(d, report)
    table = Table(title=f"gate sweep · {rec['dataset']} · {d.root} · {len(settings)} settings (* recorded)")
    for col in ("tau_av", "tau_audio", "N", "decided", "needs model", "failed"):
        table.add_column(col, justify="right")
    for _, label in METRIC_COLUMNS:
        table.add_column(label, justify="right")
    for col in ("refined", "skipped"):
        table.add_column(col, justify="right")
    for r in report.results:
        m, st = r.metrics, r.setting
        mark = "*" if st == report.recorded else ""
        table.add_row(
            f"{mark}{st.tau_av:g}",
            f"{st.tau_audio:g}",
            str(st.n_votes),
            str(r.decided),
            str(len(r.needs_model)),
            str(m["n_failed"]),
            *(_pct(m.get(k)) for k, _ in METRIC_COLUMNS),
            str(m["refined"]),
            str(m["skipped"]),
        )
    console.print(table)
    if report.unavailable:
        u = report.unavailable[0]
        console.print(
            f"{len(report.unavailable)} sample(s) could not be replayed; first: {u['id']}: {u['error']}",
            markup=False,
            soft_wrap=True,
        )
    console.print(
        "a sample that 'needs model' asked for a call its recording lacks (e.g. a refinement the recorded gate "
        f"skipped); it is left out of that setting's metrics. wrote {path}",
        markup=False,
        soft_wrap=True,
    )

"""Running an evaluation: each sample through the one run path, `workers` at a time, its file written last.

One bad sample never stops the benchmark: media that cannot be used (unreadable, over the pixel
limit) fails its sample as bad input, and an unexpected exception anywhere in a sample's run fails
that sample as an internal error, its traceback saved in its sample file. With `fail_fast` the
first such failure stops the run (SampleCrash). An interruption leaves no half-written sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel

from gar_agent.eval.datasets import Sample
from gar_agent.eval.score import score_result
from gar_agent.eval.store import INTERNAL_ERROR, EvalDir, failure_kind, sample_document
from gar_agent.loop import BackgroundLoop, run_sync
from gar_agent.media import Media, MediaError, load_media
from gar_agent.models.openai import is_backend_fault
from gar_agent.overlay import result_items, save_overlay
from gar_agent.prompts import PromptSet
from gar_agent.run import arun_and_record
from gar_agent.spec import RunSpec
from gar_agent.state import Settings
from gar_agent.topology import Topology
from gar_agent.trace.store import atomic_write

GT_COLOR = (255, 215, 0)  # RGB yellow: apart from the source colours of gar_agent.overlay


class SampleCrash(RuntimeError):
    """The run stops on a sample: --fail-fast at its first bad-input or internal-error failure, or its
    failure could not even be written. `traceback_text` is the text of the exception behind it, if any."""

    def __init__(self, message: str, traceback_text: str | None = None):
        super().__init__(message)
        self.traceback_text = traceback_text


class ServersDown(RuntimeError):
    """Every server of a served model is down (its circuit breakers are open): the run stops early.

    Without this a dead fleet would fail every remaining sample, one retry schedule each; stopping
    keeps what finished, and the same command resumes (and retries what failed on the servers).
    """


def servers_down(job: EvalJob, doc: dict) -> str | None:
    """After a sample failed on a backend fault: why no server can take a request (stop), else None."""
    down = getattr(job.model, "backend_down", None)
    if not callable(down) or not is_backend_fault(getattr(doc.get("score"), "error", None)):
        return None
    return down()


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
    spec: RunSpec | None = None  # slim: each trace records it without the texts (the folder's spec.json has them)
    fail_fast: bool = False  # stop at the first sample failed on bad input or an internal error


async def aevaluate_sample(job: EvalJob, sample: Sample) -> dict:
    """Run the graph on one sample, write its trace, overlay and (last, atomically) its sample file."""
    start = time.perf_counter()
    try:
        media = _media(sample, job)
        if isinstance(media, dict):
            doc = media
        else:
            traced = await arun_and_record(
                media, job.settings, job.model, topology=job.topology, prompts=job.prompts,
                trace_dir=job.d.traces, thread_id=sample.id, spec=job.spec,
            )  # fmt: skip
            doc = _finish(job, sample, media, traced.outcome.result, start)
    except Exception as e:  # whatever raised (our code, a broken graph, a full disk) fails this sample only
        doc = _internal_error(job, sample, e, start)
    return _stop_if_fail_fast(job, doc)


def evaluate_sample(job: EvalJob, sample: Sample) -> dict:
    """`aevaluate_sample`, waited for here (on the model's loop, else this process's: gar_agent/loop.py)."""
    return run_sync(aevaluate_sample(job, sample), job.model)


def _internal_error(job: EvalJob, sample: Sample, e: Exception, start: float) -> dict:
    """The failed sample file of an unexpected exception, its traceback kept in it.

    If even that cannot be written (e.g. the disk is full), the run stops: SampleCrash.
    """
    text = "".join(traceback.format_exception(e))
    error = f"{INTERNAL_ERROR}{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    try:
        score = score_result(sample.id, sample.gt_boxes, None, error)
        doc = sample_document(score, None, time.perf_counter() - start, None, None, sample.classes)
        doc["traceback"] = text
        return _write(job, sample, doc, score)
    except Exception as again:
        raise SampleCrash(f"sample {sample.id}: {error}, and its failure could not be written ({again})", text) from e


def _stop_if_fail_fast(job: EvalJob, doc: dict) -> dict:
    score = doc["score"]
    if job.fail_fast and failure_kind(score.error) in ("input", "internal"):
        raise SampleCrash(f"--fail-fast: sample {score.id} failed: {score.error}", doc.get("traceback"))
    return doc


def _media(sample: Sample, job: EvalJob) -> Media | dict:
    """The sample's decoded media, or (one bad file fails its sample, not the benchmark) its written failure."""
    start = time.perf_counter()
    try:
        return load_media(sample.frame, sample.audio, job.max_audio_s)
    except MediaError as e:
        score = score_result(sample.id, sample.gt_boxes, None, f"media: {e}")
        doc = sample_document(score, None, time.perf_counter() - start, None, None, sample.classes)
        return _write(job, sample, doc, score)


def _finish(job: EvalJob, sample: Sample, media: Media, result, start: float) -> dict:
    """Score a finished run, draw its overlay and write its sample file."""
    d, vis = job.d, None
    if job.vis:
        vis = f"vis/{sample.id}.jpg"
        items = result_items(result) + _gt_items(sample.gt_boxes, media.image_info.width, media.image_info.height)
        save_overlay(media.image, items, d.root / vis)
    score = score_result(sample.id, sample.gt_boxes, result)
    trace = f"traces/{sample.id}/trace.json"
    doc = sample_document(score, result, time.perf_counter() - start, trace, vis, sample.classes)
    return _write(job, sample, doc, score)


def _write(job: EvalJob, sample: Sample, doc: dict, score) -> dict:
    job.d.samples.mkdir(parents=True, exist_ok=True)
    # written last and atomically: a sample file exists only for a finished sample; compact, as traces
    # are (json's C encoder: indent= falls back to the pure-Python one), for `jq .` or `gar view`
    atomic_write(job.d.sample(sample.id), json.dumps(doc, separators=(",", ":")) + "\n")
    doc["score"] = score
    return doc


@contextlib.contextmanager
def fewer_gc_pauses(threshold: int = 20_000):
    """Collect cyclic garbage less often while samples run, and never scan what was loaded before.

    Each sample allocates tens of thousands of short-lived objects (graph steps, pydantic records,
    messages); with CPython's default gen-0 threshold of 700 the collector runs hundreds of times a
    second and rescans the long-lived models, modules and media each time: a fifth to a quarter of
    the client's CPU at 64 samples in flight. Freezing the start-up objects and a higher threshold
    keep the collections and their cost small. The process's settings are restored afterwards.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()


def runs_on_loop(model: BaseChatModel) -> bool:
    """Whether a model has its own async path (a served model, the scripted one): then samples run as
    tasks on one event loop; a model that would only be run in a worker thread per call (a local
    GPU model and its batcher) keeps a thread per sample."""
    return type(model)._agenerate is not BaseChatModel._agenerate


def run_samples(
    job: EvalJob,
    samples: Sequence[Sample],
    workers: int = 1,
    on_done: Callable[[dict], None] | None = None,
    stop=None,
) -> None:
    """Evaluate samples, `workers` at a time; `on_done` gets each sample document as it is written.

    On an interruption (Ctrl-C), or once `stop` (an Event: another process stopped) is set, the
    samples not yet started are not started; the ones running finish and are written, so nothing is
    lost or half-counted.
    """
    on_done = on_done or (lambda doc: None)
    stopped = stop.is_set if stop is not None else (lambda: False)
    if runs_on_loop(job.model):
        _run_on_loop(job, samples, workers, on_done, stopped)
    elif workers <= 1:
        for s in samples:
            if stopped():
                break
            on_done(evaluate_sample(job, s))
    else:
        _run_in_threads(job, samples, workers, on_done, stopped)


def _run_in_threads(job: EvalJob, samples: Sequence[Sample], workers: int, on_done, stopped) -> None:
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gar-eval")
    try:
        queue = iter(samples)
        running = {pool.submit(evaluate_sample, job, s) for s in _take(queue, workers)}
        down = None
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                doc = f.result()
                on_done(doc)
                down = down or servers_down(job, doc)
            if down is None and not stopped():  # submit as others finish, so a stop leaves little queued
                running |= {pool.submit(evaluate_sample, job, s) for s in _take(queue, len(finished))}
        if down is not None:
            raise ServersDown(down)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_on_loop(job: EvalJob, samples: Sequence[Sample], workers: int, on_done, stopped) -> None:
    """The samples as tasks on the model's event loop (a private one if it has none), W at a time."""
    loop = getattr(job.model, "background_loop", None)
    own = loop is None
    loop = loop or BackgroundLoop("gar-eval")
    stop = threading.Event()
    future = loop.submit(_samples_on_loop(job, samples, workers, on_done, lambda: stop.is_set() or stopped()))
    try:
        try:
            future.result()
        except KeyboardInterrupt:
            stop.set()  # start nothing more; the running samples finish and are written
            future.result()
            raise
    finally:
        if own:
            loop.close()


async def _samples_on_loop(job: EvalJob, samples, workers: int, on_done, stopped) -> None:
    queue, crash, down = iter(samples), None, None
    running: set[asyncio.Future] = set()
    while True:
        while len(running) < workers and crash is None and down is None and not stopped():
            sample = next(queue, None)
            if sample is None:
                break
            running.add(asyncio.ensure_future(aevaluate_sample(job, sample)))
        if not running:
            break
        finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in finished:
            try:
                doc = task.result()
            except Exception as e:  # a stop (--fail-fast, a failure not even writable): the running finish first
                crash = crash or e
                continue
            on_done(doc)
            down = down or servers_down(job, doc)
    if crash is not None:
        raise crash
    if down is not None:
        raise ServersDown(down)


SAMPLES_PER_PROCESS = 16  # in flight: beyond this one process's Python, not the server, sets the pace


def auto_processes(model: BaseChatModel, workers: int) -> int:
    """How many processes `gar eval` deals the samples out to when not told: with a served model (its
    own request loop), one per 16 samples in flight, at most one per CPU, where fork is available."""
    if getattr(model, "background_loop", None) is None or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(os.cpu_count() or 1, workers // SAMPLES_PER_PROCESS))


def run_in_processes(
    job: EvalJob,
    samples: Sequence[Sample],
    processes: int,
    workers: int,
    on_done: Callable[[dict], None] | None = None,
) -> None:
    """Evaluate samples in `processes` forked processes, each `workers` samples at a time.

    One process's GIL caps what its threads can do for a served model (the client's CPU per sample
    is the limit, not the server); each process adds a core. Samples are dealt out round-robin;
    every sample file is still written atomically by whoever ran it, so a resume works as usual.
    `on_done` gets {"id", "ciou"} of each finished sample in the calling process. The workers die
    with this process, however it ends (a kill included): none is left asking the model while a
    resume asks again.
    """
    ctx = multiprocessing.get_context("fork")
    queue, stop = ctx.Queue(), ctx.Event()
    shards = [list(samples[i::processes]) for i in range(processes)]
    args = (workers, queue, stop, os.getpid())
    procs = [ctx.Process(target=_shard, args=(job, shard, *args), daemon=True) for shard in shards if shard]
    for p in procs:
        p.start()
    crash, down, running = None, None, len(procs)
    try:
        while running:
            kind, payload = queue.get()
            if kind == "done" and on_done:
                on_done(payload)
            elif kind == "crash":
                crash = crash or payload
                stop.set()  # --fail-fast: the other processes start nothing more
            elif kind == "down":
                down = down or payload
            elif kind == "exit":
                running -= 1
    finally:
        for p in procs:  # on Ctrl-C the children got it too: they finish the samples they run
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    if crash:
        raise SampleCrash(*crash)
    if down:
        raise ServersDown(down)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """End this forked worker when `parent` ends, even by SIGKILL (nothing of the parent runs then).

    Linux: the kernel sends SIGKILL when the parent dies (prctl PR_SET_PDEATHSIG; it fires when the
    thread that forked us ends, and gar eval forks from its main thread). The samples in flight have
    no file yet, and a resume redoes them. Elsewhere a thread watches the parent's pid.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the prctl took effect
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), name="gar-parent-watch", daemon=True).start()


def _watch_parent(parent: int, every_s: float = 0.5) -> None:
    while os.getppid() == parent:  # an orphan is re-parented (to init or a subreaper)
        time.sleep(every_s)
    os._exit(1)


def _shard(job: EvalJob, samples: list[Sample], workers: int, queue, stop, parent: int) -> None:
    """A child process's share of the samples; what it finished and how it ended go to the parent."""
    die_with_parent(parent)
    try:
        run_samples(
            job, samples, workers, lambda doc: queue.put(("done", {"id": doc["id"], "ciou": doc["ciou"]})), stop
        )
    except SampleCrash as e:
        queue.put(("crash", (str(e), e.traceback_text)))
    except ServersDown as e:
        queue.put(("down", str(e)))
    except KeyboardInterrupt:
        pass
    finally:
        queue.put(("exit", None))


def _take(it, n: int) -> list:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out

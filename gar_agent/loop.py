"""An event loop in a daemon thread, per process: where many clips' runs and their requests wait together.

Running a clip, running and recording it, and evaluating a sample are each written once, async
(gar_agent/run.py, gar_agent/eval/execute.py); their sync entry points hand the coroutine to a
loop here with `run_sync`: the model's own loop when it has one (a served model), else this
process's loop (`process_loop`).

`gar eval` runs the samples of a model with a native async path (a served model, the scripted
one) as tasks on such a loop; the served backend keeps its HTTP connections on the same loop, so a
request needs no hop between threads. Code in other threads hands coroutines over with `run`
(blocking) or `submit` (a concurrent future); code on another event loop awaits `arun`.

A forked child (`gar eval --processes P`) gets a copy of the parent's loop object without its
thread: the loop is started again, lazily, in each process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

WORKER_THREADS = 256
"""Threads of each loop's default executor. A model without its own async path (the local GPU model
and its batcher) answers each call in one of them, as LangGraph runs a researcher's plain-function
node in one: as many can wait at once as samples are in flight (`gar eval --workers`, up to
hundreds), where asyncio's default (CPUs + 4) would cap how full a batch gets. Threads start only
when needed."""


class LoopReentry(RuntimeError):
    """A sync entry point was called from a coroutine on the loop it would wait on: it would wait forever."""


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop until it is stopped, surviving a KeyboardInterrupt or SystemExit raised in one of its tasks.

    asyncio lets those two out of `run_forever` (after failing the task with them): a model that
    raises KeyboardInterrupt in its call (a Ctrl-C handler of its own) would end this thread, and
    every run waiting on the loop would wait forever. Serving on, the failed task's waiters get the
    exception, up to the sync caller, which raises it as a sync run would have.
    """
    while True:
        try:
            loop.run_forever()
            return
        except (KeyboardInterrupt, SystemExit):
            continue


class BackgroundLoop:
    """A lazily started event loop thread; `on_start(loop)` runs on the loop once it is up, in each process."""

    def __init__(self, name: str = "gar-loop", on_start: Callable[[], None] | None = None) -> None:
        self.name = name
        self.on_start = on_start
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """This process's loop, started on first use."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                loop.set_default_executor(ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix=f"{self.name}-worker"))
                thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._pid, self._loop, self._thread = os.getpid(), loop, thread
                if self.on_start:
                    self.on_start()
            return self._loop

    def is_current(self) -> bool:
        """Whether the caller runs on this loop (await directly, no hand-over)."""
        try:
            return asyncio.get_running_loop() is self._loop and self._pid == os.getpid()
        except RuntimeError:
            return False

    def submit(self, coro: Coroutine) -> concurrent.futures.Future:
        """Schedule a coroutine on the loop; its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine) -> Any:
        """Run a coroutine on the loop and wait for its result here (a thread, not the loop).

        From a coroutine on this very loop the wait could never end (the loop would wait on
        itself): LoopReentry instead. An interruption here (Ctrl-C) cancels the coroutine.
        The caller's context variables go with it (asyncio copies them into the task).
        """
        if self.is_current():
            coro.close()
            raise LoopReentry(
                f"a sync gar_agent call was made from a coroutine on the {self.name!r} event loop, which it would "
                "wait on forever: await the async version (arun_clip, arun_and_record, aevaluate_sample) instead"
            )
        future = self.submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # a KeyboardInterrupt while waiting: the run stops too (no-op once done)
            raise

    async def arun(self, coro: Coroutine) -> Any:
        """Await a coroutine on the loop: directly when already on it, else handed over."""
        if self.is_current():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def close(self, before: Callable[[], Coroutine] | None = None) -> None:
        """Stop this process's loop (a parent's copy is left alone), after awaiting `before()` on it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():  # both set together
                return
            self._loop = self._thread = None
        if threading.current_thread() is thread:  # closed from the loop itself (e.g. a finalizer run there)

            async def shutdown() -> None:
                if before is not None:
                    with contextlib.suppress(Exception):
                        await before()
                loop.stop()

            loop.create_task(shutdown())
            return
        if thread.is_alive():
            if before is not None:
                with contextlib.suppress(Exception):  # closing is best effort; the loop still stops
                    asyncio.run_coroutine_threadsafe(before(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()


_PROCESS_LOOP = BackgroundLoop("gar")


def process_loop() -> BackgroundLoop:
    """This process's loop for runs whose model has none of its own (started on first use)."""
    return _PROCESS_LOOP


def loop_for(model: Any) -> BackgroundLoop:
    """Where a run with this model goes: the model's own loop (a served model's requests wait there,
    so they need no hand-over between loops), else this process's loop."""
    own = getattr(model, "background_loop", None)
    return own if isinstance(own, BackgroundLoop) else _PROCESS_LOOP


def run_sync(coro: Coroutine, model: Any = None) -> Any:
    """The sync form of an async entry point: run `coro` on `loop_for(model)` and wait for it here."""
    return loop_for(model).run(coro)

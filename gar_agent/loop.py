"""An event loop in a daemon thread, per process: where many clips' runs and their requests wait together.

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
from typing import Any


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
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
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
        """Run a coroutine on the loop and wait for its result here (a thread, not the loop)."""
        return self.submit(coro).result()

    async def arun(self, coro: Coroutine) -> Any:
        """Await a coroutine on the loop: directly when already on it, else handed over."""
        if self.is_current():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def close(self, before: Callable[[], Coroutine] | None = None) -> None:
        """Stop this process's loop (a parent's copy is left alone), after awaiting `before()` on it."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or self._pid != os.getpid():
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

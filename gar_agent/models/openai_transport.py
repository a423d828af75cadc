"""The HTTP side of the served backend: one event loop per process, aiohttp connections, OpenAI's SDK.

Hundreds of requests in flight from one process are cheap on an event loop and costly on threads:
a thread per request behind a synchronous connection pool spends more CPU on the pool's lock and
on handing the GIL around than on the requests (measured with scripts/bench_serving.py: the client
cost per sample fell from ~35 to ~20 ms of CPU at 64 samples in flight). So every request of a
process goes through one loop, running in a daemon thread, that owns one `openai.AsyncOpenAI` per
server over aiohttp (the SDK's own `DefaultAioHttpClient`). Graph nodes stay plain functions in
their threads: `run` hands a coroutine to the loop and waits for its answer; `arun` does the same
from another event loop (LangGraph's async API, `langgraph dev`).

A forked child (`gar eval --processes P`) must not touch its parent's loop or sockets: the loop and
the clients are made again, lazily, in each process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any

import httpx2
import openai


class LoopClients:
    """An event loop thread and one AsyncOpenAI client per base URL, made on first use in each process."""

    def __init__(self, base_urls: list[str], api_key: str, timeout: float, max_connections: int) -> None:
        self.base_urls = list(base_urls)
        self.api_key = api_key
        self.timeout = timeout
        self.max_connections = max_connections
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.clients: list[openai.AsyncOpenAI] = []

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._pid == os.getpid():
                return self._loop
            # first use, or a forked child holding a copy of its parent's (threadless) loop: start afresh
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="gar-openai-loop", daemon=True)
            thread.start()
            limits = httpx2.Limits(max_connections=self.max_connections, max_keepalive_connections=self.max_connections)
            self.clients = [
                openai.AsyncOpenAI(
                    base_url=url,
                    api_key=self.api_key,
                    max_retries=0,  # our own retries (gar_agent.models.openai_backend)
                    timeout=self.timeout,
                    http_client=openai.DefaultAioHttpClient(limits=limits, timeout=self.timeout),
                )
                for url in self.base_urls
            ]
            self._pid, self._loop, self._thread = os.getpid(), loop, thread
            return loop

    def run(self, coro: Coroutine) -> Any:
        """Run a coroutine on the loop and wait for its result here (a thread, not the loop)."""
        return asyncio.run_coroutine_threadsafe(coro, self._ensure()).result()

    async def arun(self, coro: Coroutine) -> Any:
        """Await a coroutine run on the loop from another event loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._ensure()))

    def close(self) -> None:
        """Close the connections and stop the loop (only this process's; a parent's copy is left alone)."""
        with self._lock:
            loop, thread, clients = self._loop, self._thread, self.clients
            if loop is None or self._pid != os.getpid():
                return
            self._loop = self._thread = None
            self.clients = []

        async def close_all() -> None:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

        if thread.is_alive():
            with contextlib.suppress(Exception):  # closing is best effort; the loop still stops
                asyncio.run_coroutine_threadsafe(close_all(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()

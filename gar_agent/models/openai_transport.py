"""The HTTP side of the served backend: aiohttp connections (OpenAI's SDK) on one event loop per process.

Hundreds of requests in flight from one process are cheap on an event loop and costly on threads:
a thread per request behind a synchronous connection pool spends more CPU on the pool's lock and
on handing the GIL around than on the requests (scripts/bench_serving.py: at 64 samples in flight
the client's CPU per sample fell by a quarter, and by half once `gar eval` ran the samples
themselves on the loop). So the requests of a process go through one `BackgroundLoop` that owns
one `openai.AsyncOpenAI` per server over aiohttp (the SDK's own `DefaultAioHttpClient`). Code on
that loop awaits a request directly; a node in a thread hands it over and waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import httpx2
import openai

from gar_agent.loop import BackgroundLoop


class LoopClients:
    """A background loop and one AsyncOpenAI client per base URL, made again in each process."""

    def __init__(self, base_urls: list[str], api_key: str, timeout: float, max_connections: int) -> None:
        self.base_urls = list(base_urls)
        self.api_key = api_key
        self.timeout = timeout
        self.max_connections = max_connections
        self.clients: list[openai.AsyncOpenAI] = []
        self.loop = BackgroundLoop("gar-openai", on_start=self._connect)

    def _connect(self) -> None:
        # a forked child must not share its parent's sockets: new clients with each process's loop
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

    def run(self, coro: Coroutine) -> Any:
        """Run a request coroutine on the loop and wait for it here (a thread, not the loop)."""
        return self.loop.run(coro)

    async def arun(self, coro: Coroutine) -> Any:
        """Await a request coroutine on the loop (directly when the caller is on it)."""
        return await self.loop.arun(coro)

    def close(self) -> None:
        """Close this process's connections and stop its loop."""
        clients, self.clients = self.clients, []

        async def disconnect() -> None:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

        self.loop.close(before=disconnect)

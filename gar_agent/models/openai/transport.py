"""The HTTP side of the served backend: an aiohttp session on one event loop per process.

Hundreds of requests in flight from one process are cheap on an event loop and costly on threads:
a thread per request behind a synchronous connection pool spends more CPU on the pool's lock and
on handing the GIL around than on the requests. So the requests of a process go through one
`BackgroundLoop` holding one aiohttp session (connection pool) for every server; `gar eval` runs
its samples on that loop too, so a request needs no hand-over between threads.

The OpenAI SDK's own client is not used to send: its request machinery costs three times the CPU of
the POST itself (0.9 vs 0.3 ms a call, measured on this loop), and at 64+ samples in flight that CPU
is the ceiling on throughput. What the SDK would add (retries, status handling) is ours anyway
(gar_agent/models/openai/backend.py); LangChain's ChatOpenAI still builds each payload and reads
each answer.

A body is read in chunks up to a cap (`BodyTooLarge` past it): a server we do not control can send
a body of any size, or one that never ends, and reading it whole took 5.8 GB for a 200 MB answer.
"""

from __future__ import annotations

import functools
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from gar_agent.loop import BackgroundLoop

# Far above any real answer (a chat completion of a few votes is kilobytes; n=64 long answers with
# logprobs stay under a few MB), small enough that a runaway body costs little memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
CHUNK = 64 * 1024


class BodyTooLarge(Exception):
    """The server's body passed the cap; the connection is dropped, the rest never read."""

    def __init__(self, cap: int, declared: int | None = None) -> None:
        self.cap, self.declared = cap, declared
        said = f" (it declared {declared} bytes)" if declared is not None else ""
        super().__init__(f"body over the {cap}-byte cap{said}")


@dataclass
class Answer:
    """What a server sent back to one POST."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@functools.lru_cache(maxsize=64)
def proxy_for(url: str) -> str | None:
    """The proxy the environment names for a URL (HTTP_PROXY / HTTPS_PROXY, NO_PROXY honoured), else None."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body of a response, read in chunks and given up on past `max_bytes`.

    The count is of the bytes as aiohttp hands them over, i.e. after gzip/deflate decoding, so a
    small compressed bomb is stopped too. Past the cap the connection is closed, not returned to
    the pool (the rest of the body is still on its way).
    """
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        response.close()
        raise BodyTooLarge(max_bytes, declared)
    parts: list[bytes] = []
    size = 0
    while chunk := await response.content.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            response.close()
            raise BodyTooLarge(max_bytes)
        parts.append(chunk)
    return b"".join(parts)


class LoopSession:
    """A background loop and its aiohttp session, made again in each process (a fork must not share sockets)."""

    def __init__(self, max_connections: int, servers: int = 1) -> None:
        self.max_connections = max_connections
        self.servers = servers
        self._session: aiohttp.ClientSession | None = None
        self.loop = BackgroundLoop("gar-openai", on_start=self._forget)

    def _forget(self) -> None:
        self._session = None  # a new loop (first use, or a forked child): a new session on it

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections * self.servers, limit_per_host=self.max_connections
            )
            # not trust_env: aiohttp would look up proxies and read ~/.netrc in a worker thread on every
            # request (a tenth of the client's CPU); the proxy is looked up once per server instead
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout: float, max_bytes: int = MAX_RESPONSE_BYTES
    ) -> Answer:
        """POST a JSON body; the answer's body at most `max_bytes` long, else BodyTooLarge.

        aiohttp's errors (connection, payload) and asyncio.TimeoutError pass through.
        """
        session = self._open()
        timeout_s = aiohttp.ClientTimeout(total=timeout)
        async with session.post(url, data=body, headers=headers, timeout=timeout_s, proxy=proxy_for(url)) as r:
            return Answer(r.status, r.headers, await read_capped(r, max_bytes))

    def run(self, coro: Coroutine) -> Any:
        """Run a request coroutine on the loop and wait for it here (a thread, not the loop)."""
        return self.loop.run(coro)

    async def arun(self, coro: Coroutine) -> Any:
        """Await a request coroutine on the loop (directly when the caller is on it)."""
        return await self.loop.arun(coro)

    def close(self) -> None:
        """Close this process's connections and stop its loop."""
        session, self._session = self._session, None

        async def disconnect() -> None:
            if session is not None:
                await session.close()

        self.loop.close(before=disconnect)

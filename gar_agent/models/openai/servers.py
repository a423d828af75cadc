"""Which server gets a request: least loaded, a clip's calls kept together, dead servers skipped.

A `ServerPool` is the served backend's view of its fleet (one entry per `--base-url`):

- a request goes to the server with the fewest requests in flight (ties in turn), except that a
  clip's calls stay on the server that took its first call while that server is not clearly
  busier, since its prefix cache holds the clip's media; a retry prefers another server;
- a circuit breaker per server: after `failures` transient faults in a row (connection errors,
  timeouts, 5xx; not 429, which is a server asking us to slow down, not a dead one) the server
  is skipped for a cool-off that doubles while it stays dead (up to `max_cooloff_s`); when it
  ends, one request probes the server, and an answer closes the breaker. A dead or hung server
  therefore costs a few requests, not every request of the run waiting for its timeout.

When every server is skipped, `acquire` raises `AllServersDown` naming each server's last fault;
the caller counts that as a failed attempt and backs off as for any transient fault.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

AFFINITY_CLIPS = 4096  # clips whose server is remembered (far more than are ever in flight)


class AllServersDown(Exception):
    """Every server's breaker is open: nothing to send the request to until a cool-off ends."""


@dataclass(eq=False)  # servers are told apart by identity
class Server:
    """One server and what the pool knows of it."""

    url: str
    in_flight: int = 0
    sent: int = 0
    failed: int = 0
    fails_in_row: int = 0
    open_until: float = 0.0  # monotonic time the breaker's cool-off ends (0: closed)
    cooloff_s: float = 0.0  # the current cool-off (doubles while the server stays dead)
    probing: bool = False  # a request is testing the server after its cool-off
    last_fault: str = ""

    def is_open(self, now: float) -> bool:
        """Skipped now: cooling off, or past it with its probe still out."""
        return self.open_until > 0 and (now < self.open_until or self.probing)


class ServerPool:
    """The servers of one backend, their load and health; safe to use from several threads."""

    def __init__(
        self,
        urls: list[str],
        *,
        affinity_slack: int = 2,
        failures: int = 5,
        cooloff_s: float = 5.0,
        max_cooloff_s: float = 120.0,
    ) -> None:
        self.servers = [Server(url=u) for u in urls]
        self.affinity_slack = affinity_slack
        self.failures = failures
        self.base_cooloff_s = cooloff_s
        self.max_cooloff_s = max_cooloff_s
        self._lock = threading.Lock()
        self._turn = 0
        self._homes: OrderedDict = OrderedDict()  # clip key -> server, LRU

    def acquire(self, avoid: Server | None = None, clip: int | None = None) -> Server:
        """The server for the next request (counted in flight until `release`)."""
        now = time.monotonic()
        with self._lock:
            alive = [s for s in self.servers if not s.is_open(now)]
            if not alive:
                raise AllServersDown(self._down_text(now))
            pool = [s for s in alive if s is not avoid] or alive
            start = self._turn
            self._turn += 1
            # fewest in flight; among equals, the next in turn (round-robin when all are idle)
            order = sorted(range(len(pool)), key=lambda i: (pool[i].in_flight, (i - start) % len(pool)))
            server = pool[order[0]]
            # a clip's calls share their prefix (media first): keep them on the server whose prefix
            # cache holds it, unless that server is now clearly busier than the least loaded one
            home = self._homes.get(clip) if clip is not None else None
            if home is not None and home in pool and home.in_flight <= server.in_flight + self.affinity_slack:
                server = home
            if clip is not None:
                self._homes[clip] = server
                self._homes.move_to_end(clip)
                if len(self._homes) > AFFINITY_CLIPS:
                    self._homes.popitem(last=False)
            if server.open_until and now >= server.open_until:
                server.probing = True  # the one request that tests a server after its cool-off
            server.in_flight += 1
            server.sent += 1
            return server

    def release(self, server: Server, fault: str | None = None, dead: bool = False) -> None:
        """A request ended: answered (fault None), failed, or failed in a way that counts toward `dead`."""
        with self._lock:
            server.in_flight -= 1
            server.failed += int(fault is not None)
            was_probe, server.probing = server.probing, False
            if fault is None or not dead:
                if fault is None:  # an answer: the server is alive
                    server.fails_in_row, server.open_until, server.cooloff_s = 0, 0.0, 0.0
                return
            server.fails_in_row += 1
            server.last_fault = fault
            if was_probe or server.fails_in_row >= self.failures:
                grown = server.cooloff_s * 2 if server.cooloff_s else self.base_cooloff_s
                server.cooloff_s = min(grown, self.max_cooloff_s)
                server.open_until = time.monotonic() + server.cooloff_s

    def down(self) -> str | None:
        """Why no server can take a request now (every breaker open), else None."""
        now = time.monotonic()
        with self._lock:
            return self._down_text(now) if all(s.is_open(now) for s in self.servers) else None

    def _down_text(self, now: float) -> str:
        parts = [
            f"{s.url} ({s.last_fault or 'failing'}; {s.fails_in_row} failures in a row, "
            f"next try in {max(0.0, s.open_until - now):.0f} s)"
            for s in self.servers
        ]
        return "every server is down: " + "; ".join(parts)

    def stats(self) -> list[dict]:
        """Per server: requests sent, failed attempts, requests in flight now, breaker state."""
        now = time.monotonic()
        with self._lock:
            return [
                {
                    "url": s.url,
                    "sent": s.sent,
                    "failed": s.failed,
                    "in_flight": s.in_flight,
                    "down": s.is_open(now),
                }
                for s in self.servers
            ]

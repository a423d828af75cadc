"""The released scripts' order across sources, kept by the per-source branches of a `reference` run.

The scripts run a clip's sources one after another: every source's votes (source 1's N votes, then
source 2's), then the gate of each, then Refine where gated. A vote whose JSON is not an object
raises once that source's N votes are in, and the clip is dropped: no later source is asked, no
gate runs (nothing is counted as refined or skipped), no Refine is asked. Our branches run side by
side, so in a `reference` run with several sources they keep that order through this object:

- a source's first Analyze pass waits until every earlier source's analysis has ended;
- the Gate (or Refine, in a graph without a Gate) waits until every source's analysis has ended;
- where one ended the clip (`end(k, reason)`), the waiting node asks nothing and records why.

A branch marks its analysis ended when Analyze fails or has its N votes, or when it reaches the Gate
or Refine. (A graph of one's own whose branch stops voting before N and has neither would leave the
later sources waiting: the shipped graphs all end analysis in one of these ways.) With
`--votes-per-call` below N the clip ends at the pass holding the bad vote, where the scripts would
ask the rest of that source's N votes first; the outcome is the same.
The protocol's Generate puts a fresh `ScriptOrder` on the run's context; a run without one (protocol
`gar`, a single source, a graph started after Generate) waits for nothing.

A node body asks to wait by yielding a `Wait`; `runnable.drive` / `adrive` block the thread or
await on the event loop until it is released, and send back the reason the clip was dropped (or
None). An exception in any node body `abort`s the order, so no branch waits on one that died.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass


class ScriptOrder:
    """Which sources' analyses have ended in one run, and whether one of them dropped the clip."""

    def __init__(self, sources: int) -> None:
        self.sources = sources
        self._ended: dict[int, str | None] = {}  # source -> None (analysed) or why it dropped the clip
        self._aborted: str | None = None
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def end(self, source: int, dropped: str | None = None) -> None:
        """Source `source`'s analysis has ended; `dropped`: the reason it ends the clip."""
        with self._cond:
            if source not in self._ended or (dropped and self._ended[source] is None):
                self._ended[source] = dropped
            self._wake()

    def abort(self, why: str) -> None:
        """Release every waiter with `why` (a branch raised: it will never mark its analysis)."""
        with self._cond:
            self._aborted = self._aborted or why
            self._wake()

    def _wake(self) -> None:  # under the lock
        self._cond.notify_all()
        for loop, future in self._waiters:
            loop.call_soon_threadsafe(_release, future)
        self._waiters.clear()

    def _verdict(self, sources: range) -> tuple[bool, str | None]:
        """(whether to go on waiting, the reason the clip is dropped) for the analyses of `sources`."""
        if self._aborted:
            return False, self._aborted
        for k in sorted(self._ended):
            if self._ended[k]:
                return False, f"the released code dropped the clip at source {k + 1}'s votes: {self._ended[k]}"
        return not all(k in self._ended for k in sources), None

    def wait_sync(self, sources: range) -> str | None:
        """Block until the analyses of `sources` have ended (or one dropped the clip)."""
        with self._cond:
            while True:
                pending, dropped = self._verdict(sources)
                if not pending:
                    return dropped
                self._cond.wait()

    async def wait_async(self, sources: range) -> str | None:
        """`wait_sync` on the event loop: the branches are tasks of one loop, or threads."""
        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                pending, dropped = self._verdict(sources)
                if not pending:
                    return dropped
                future = loop.create_future()
                self._waiters.append((loop, future))
            await future


def _release(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class Wait:
    """Yielded by a node body: resume once the analyses of `sources` have ended; sent back the
    reason the clip was dropped, or None."""

    order: ScriptOrder
    sources: range


def script_order(ctx) -> ScriptOrder | None:
    """The run's order, where its protocol keeps one (reference, several sources)."""
    return getattr(ctx, "script_order", None)


def earlier(order: ScriptOrder, source: int) -> Wait:
    """Wait for the analyses of the sources before `source` (its first Analyze pass)."""
    return Wait(order, range(source))


def everyone(order: ScriptOrder) -> Wait:
    """Wait for the analyses of every source (the Gate, or Refine where no Gate ran)."""
    return Wait(order, range(order.sources))

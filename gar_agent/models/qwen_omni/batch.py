"""Collect concurrent calls into one batched generate: several clips at once on one device.

`gar eval --workers W --batch-size B` runs W samples in threads; each thread's model call arrives
here. A local model runs one generate at a time, so instead of queueing on a lock each caller enqueues
its prompts; whichever caller takes the device next runs every waiting request with the same
generation settings (up to B prompts) as one left-padded generate and hands each caller its rows.
When the device is idle the first caller waits a moment (`wait_s`) for others to join.
Greedy rows are independent of their batch-mates (left padding is masked), so results equal the
unbatched ones; the evaluator needs no change.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)  # what requests must share to run in one batch (the generation settings)


@dataclass
class _Request(Generic[K]):
    key: K
    prompts: list[Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: list[Any] | None = None
    error: BaseException | None = None


class DynamicBatcher(Generic[K]):
    """Runs `execute(key, prompts) -> one result per prompt` on batches of concurrent requests."""

    def __init__(self, execute: Callable[[K, list[Any]], list[Any]], max_prompts: int, wait_s: float = 0.02):
        if max_prompts < 1:
            raise ValueError(f"batch size must be >= 1, got {max_prompts}")
        self.execute = execute
        self.max_prompts = max_prompts
        self.wait_s = wait_s
        self._queue: list[_Request[K]] = []
        self._cond = threading.Condition()
        self._device = threading.Lock()  # one generate at a time
        self.batches: list[int] = []  # prompts per executed batch, for tests and benchmarks

    def submit(self, key: K, prompts: list[Any]) -> list[Any]:
        """Results for `prompts` (in order), computed in some batch of requests with the same `key`."""
        request = _Request(key, list(prompts))
        with self._cond:
            self._queue.append(request)
            self._cond.notify_all()
        while not request.done.is_set():
            with self._device:
                if request.done.is_set():  # another caller ran it while we waited for the device
                    break
                self._gather(request)
                batch = self._take(request)
                self._run(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _waiting(self, key: K) -> int:
        return sum(len(r.prompts) for r in self._queue if r.key == key)

    def _gather(self, lead: _Request[K]) -> None:
        """Give other callers `wait_s` to join the batch, unless it is full already."""
        deadline = time.monotonic() + self.wait_s
        with self._cond:
            while self._waiting(lead.key) < self.max_prompts:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)

    def _take(self, lead: _Request[K]) -> list[_Request[K]]:
        """The lead request plus waiting ones with its key, oldest first, within `max_prompts`."""
        with self._cond:
            batch = [lead]
            size = len(lead.prompts)
            for r in self._queue:
                if r is not lead and r.key == lead.key and size + len(r.prompts) <= self.max_prompts:
                    batch.append(r)
                    size += len(r.prompts)
            for r in batch:
                self._queue.remove(r)
        return batch

    def _run(self, batch: list[_Request[K]]) -> None:
        prompts = [p for r in batch for p in r.prompts]
        self.batches.append(len(prompts))
        try:
            results = self.execute(batch[0].key, prompts)
        except BaseException as e:  # every caller of the batch sees the failure
            for r in batch:
                r.error = e
                r.done.set()
            return
        start = 0
        for r in batch:
            r.result = results[start : start + len(r.prompts)]
            start += len(r.prompts)
            r.done.set()

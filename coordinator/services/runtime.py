"""The coordinator's live parts, built once by the app's lifespan and handed to every service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from gridx.coordinator.clock import Clock
from gridx.coordinator.db.connection import Database
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.local import LocalStorage
from gridx.coordinator.storage.signing import UrlSigner

log = logging.getLogger("gridx.coordinator")


class WakeQueue:
    """Long-polling claimers wait here; each newly ready task wakes exactly one of them (FIFO)."""

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()

    def waiter(self) -> asyncio.Future[None]:
        """Join the queue; the future resolves when a task may be ready."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def discard(self, fut: asyncio.Future[None]) -> None:
        """Leave the queue."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)

    def wake(self, n: int) -> None:
        """Wake the `n` longest-waiting claimers."""
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1

    def __len__(self) -> int:
        return len(self._waiters)


@dataclass
class Runtime:
    """Shared state of one coordinator process."""

    settings: Settings
    db: Database
    storage: LocalStorage
    signer: UrlSigner
    clock: Clock
    pool: Executor
    wakeups: WakeQueue = field(default_factory=WakeQueue)
    heartbeats: dict[str, int] = field(default_factory=dict)
    """Node id -> time of its latest heartbeat, not yet written (flushed in batches)."""
    node_cache: dict[str, NodeRow] = field(default_factory=dict)
    counters: Any = None
    """The process's Prometheus counters (`services.metrics.Metrics`), set by the app."""
    limits: dict[str, list[int]] = field(default_factory=dict)
    """Rate-limit windows: key -> request times (epoch ms) in the last minute."""
    """Token hash -> node. Identities never change once created, so entries never go stale."""
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def allow(self, key: str, per_minute: int) -> bool:
        """A sliding one-minute window: True while `key` has made fewer than `per_minute` calls."""
        now = self.clock.now_ms()
        recent = [t for t in self.limits.get(key, []) if now - t < 60_000]
        allowed = len(recent) < per_minute
        if allowed:
            recent.append(now)
        self.limits[key] = recent
        if len(self.limits) > 100_000:  # forget idle keys
            self.limits = {k: v for k, v in self.limits.items() if v and now - v[-1] < 60_000}
        return allowed

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a coroutine in the background, keeping a reference and logging its failure."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)

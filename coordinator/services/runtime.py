"""The coordinator's live parts, built once by the app's lifespan and handed to every service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from gridx.coordinator.clock import Clock
from gridx.coordinator.db.connection import Database
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.base import Storage
from gridx.coordinator.storage.signing import UrlSigner

log = logging.getLogger("gridx.coordinator")

NODE_CACHE_MS = 60_000
TASKS_CHANNEL = "gridx_tasks"
NODES_CHANNEL = "gridx_nodes"
"""A node's record changed (drained): payload `<replica id> <node id>`; replicas drop it."""
"""Replicas tell each other about newly ready tasks here: payload `<replica id> <count>`."""


class WakeQueue:
    """Long-polling claimers wait here; each newly ready task wakes exactly one of them (FIFO).

    A wake-up carries how many claimers it already went through: one that cannot take the task
    (wrong capabilities, an owner that holds another copy, a low reputation) hands it to the
    next, at most once around the queue.
    """

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[int]] = deque()

    def waiter(self) -> asyncio.Future[int]:
        """Join the queue; the future resolves (to its hop count) when a task may be ready."""
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def discard(self, fut: asyncio.Future[int]) -> None:
        """Leave the queue."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(fut)

    def wake(self, n: int, hops: int = 0) -> None:
        """Wake the `n` longest-waiting claimers."""
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(hops)
                n -= 1

    def __len__(self) -> int:
        return len(self._waiters)


@dataclass
class Runtime:
    """Shared state of one coordinator process."""

    settings: Settings
    db: Database
    storage: Storage
    signer: UrlSigner
    """Signs the coordinator's own blob and result links (local storage)."""
    clock: Clock
    pool: Executor
    replica: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    """This process's name among coordinator replicas (aggregation leases carry it)."""
    wakeups: WakeQueue = field(default_factory=WakeQueue)
    heartbeats: dict[str, tuple[int, tuple[str, ...]]] = field(default_factory=dict)
    """Node id -> (time of its latest heartbeat, the tasks it said it runs), not yet written
    (flushed in batches)."""
    node_cache: dict[str, tuple[NodeRow, int]] = field(default_factory=dict)
    """Token hash -> (node, when it was read). A change made through another replica (a drain)
    arrives as a notification that drops the entry; entries are re-read after `NODE_CACHE_MS`
    whatever happens."""
    counters: Any = None
    """The process's Prometheus counters (`services.metrics.Metrics`), set by the app."""
    limits: dict[str, list[int]] = field(default_factory=dict)
    """Rate-limit windows: key -> request times (epoch ms) in the last minute."""
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    aggregating: set[tuple[str, int]] = field(default_factory=set)
    """(job id, round) merges running in this process."""

    def wake(self, n: int) -> None:
        """`n` tasks became ready: wake local claimers, and tell the other replicas."""
        if n <= 0:
            return
        self.wakeups.wake(n)
        if self.db.dialect != "sqlite":
            self.spawn(self.db.notify(TASKS_CHANNEL, f"{self.replica} {n}"), "notify")

    def node_changed(self, node_id: str) -> None:
        """Forget a node's cached record here and on every other replica."""
        self.forget_node(node_id)
        if self.db.dialect != "sqlite":
            self.spawn(self.db.notify(NODES_CHANNEL, f"{self.replica} {node_id}"), "notify")

    def forget_node(self, node_id: str) -> None:
        """Drop this process's cached record of a node."""
        for token_hash, (cached, _) in list(self.node_cache.items()):
            if cached.id == node_id:
                del self.node_cache[token_hash]

    def on_node_notification(self, payload: str) -> None:
        """Another replica changed a node: drop it here."""
        sender, _, node_id = payload.partition(" ")
        if sender != self.replica:
            self.forget_node(node_id)

    def on_notification(self, payload: str) -> None:
        """Another replica made tasks ready: wake as many local claimers."""
        sender, _, count = payload.partition(" ")
        if sender != self.replica and count.isdigit():
            self.wakeups.wake(int(count))

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

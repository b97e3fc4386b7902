"""Waking long-polling nodes when tasks become ready, in this process and on other replicas."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from gridx.coordinator.db.connection import Database
from gridx.coordinator.services.background import Background

TASKS_CHANNEL = "gridx_tasks"
"""Replicas tell each other about newly ready tasks here: payload `<replica id> <count>`."""


class Wakeups:
    """Long-polling claimers wait here; each newly ready task wakes exactly one of them (FIFO).

    A wake-up carries how many claimers it already went through: one that cannot take the task
    (wrong capabilities, an owner that holds another copy, a low reputation) hands it to the
    next, at most once around the queue.
    """

    def __init__(self, db: Database, replica: str, background: Background) -> None:
        self._db = db
        self._replica = replica
        self._background = background
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
        """Wake the `n` longest-waiting claimers of this process."""
        while n > 0 and self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(hops)
                n -= 1

    def tasks_ready(self, n: int) -> None:
        """`n` tasks became ready: wake local claimers, and tell the other replicas."""
        if n <= 0:
            return
        self.wake(n)
        if self._db.dialect != "sqlite":
            self._background.spawn(self._db.notify(TASKS_CHANNEL, f"{self._replica} {n}"), "notify")

    def on_notification(self, payload: str) -> None:
        """Another replica made tasks ready: wake as many local claimers."""
        sender, _, count = payload.partition(" ")
        if sender != self._replica and count.isdigit():
            self.wake(int(count))

    def __len__(self) -> int:
        return len(self._waiters)

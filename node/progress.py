"""A transfer's progress in words for the task's phase: `the result: 312.0 MB / 1.0 GB, 4.1 MB/s`
(its first word stays the same, so the node logs it as one step, every 10 s)."""

from __future__ import annotations

import time
from collections.abc import Callable

from gridx.schemas.sizes import human

EVERY_S = 0.5


class Meter:
    """Counts the bytes of a transfer of `what` (`total` bytes) and tells `say` where it stands,
    at most every `EVERY_S` (and once at the end)."""

    def __init__(self, what: str, total: int, say: Callable[[str], None]) -> None:
        self.what = what
        self.total = total
        self.say = say
        self.done = 0
        self.started = time.monotonic()
        self._said = 0.0

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._said < EVERY_S and self.done < self.total:
            return
        self._said = now
        rate = self.done / max(now - self.started, 1e-3)
        done = f"{human(min(self.done, self.total))} / {human(self.total)}"
        self.say(f"{self.what}: {done}, {human(rate)}/s")

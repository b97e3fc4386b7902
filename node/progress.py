"""A transfer's progress in words for the task's phase: `312.0 MB / 1.0 GB, 4.1 MB/s`."""

from __future__ import annotations

import time
from collections.abc import Callable

from gridx.schemas.sizes import human

EVERY_S = 0.5


class Meter:
    """Counts the bytes of a transfer of `total` bytes and tells `say` where it stands, at most
    every `EVERY_S` (and once at the end)."""

    def __init__(self, total: int, say: Callable[[str], None]) -> None:
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
        self.say(f"{human(min(self.done, self.total))} / {human(self.total)}, {human(rate)}/s")

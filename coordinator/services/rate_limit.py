"""Sliding one-minute windows per key (an address, an action), kept in memory."""

from __future__ import annotations

from gridx.coordinator.clock import Clock

WINDOW_MS = 60_000
MAX_KEYS = 100_000


class RateLimiter:
    """Counts calls per key over the last minute."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._calls: dict[str, list[int]] = {}

    def recent(self, key: str) -> int:
        """How many calls `key` made in the last minute."""
        now = self._clock.now_ms()
        return sum(1 for t in self._calls.get(key, []) if now - t < WINDOW_MS)

    def allow(self, key: str, per_minute: int) -> bool:
        """Record a call unless `key` already made `per_minute` of them in the last minute;
        True when recorded."""
        now = self._clock.now_ms()
        recent = [t for t in self._calls.get(key, []) if now - t < WINDOW_MS]
        allowed = len(recent) < per_minute
        if allowed:
            recent.append(now)
        self._calls[key] = recent
        if len(self._calls) > MAX_KEYS:  # forget idle keys
            self._calls = {k: v for k, v in self._calls.items() if v and now - v[-1] < WINDOW_MS}
        return allowed

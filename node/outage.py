"""A coordinator that does not answer: told to the node's owner once, then once a minute, not
at every retry; retries back off (with jitter, so a fleet does not return in step)."""

from __future__ import annotations

import logging
import random
import time

log = logging.getLogger("gridx.node")

REMIND_S = 60.0
MAX_BACKOFF_S = 10.0


class Outage:
    """The current stretch of failed calls to the coordinator, if any."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.told = 0.0
        self.failures = 0

    def failed(self, what: str, exc: BaseException) -> float:
        """Note a call that got no answer; returns how long to wait before the next try."""
        now = time.monotonic()
        if self.since is None:
            self.since = self.told = now
            log.warning("coordinator unreachable (%s: %s); retrying, quietly", what, exc)
        elif now - self.told >= REMIND_S:
            self.told = now
            log.warning("coordinator still unreachable after %.0f s (%s)", now - self.since, exc)
        self.failures += 1
        backoff = min(MAX_BACKOFF_S, 2.0 ** min(self.failures - 1, 4))
        return backoff * random.uniform(0.5, 1.0)

    def ok(self) -> None:
        """A call was answered: the stretch, if there was one, is over."""
        if self.since is not None:
            log.info("coordinator reachable again after %.0f s", time.monotonic() - self.since)
        self.since = None
        self.failures = 0

"""Counters this coordinator process keeps as it goes (reset when it restarts, as counters are);
rendered with the database's gauges by `stats.prometheus`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Metrics:
    """What the coordinator counts."""

    leases_expired: int = 0
    aggregations: int = 0
    aggregation_seconds: float = 0.0
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    """(method, status class) -> requests answered."""
    request_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    """Method -> seconds spent answering."""

    def observe_request(self, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency."""
        self.requests[(method, f"{status // 100}xx")] += 1
        self.request_seconds[method] += seconds

"""Prometheus metrics: counters kept in memory by this process, gauges read from the database."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gridx.coordinator.db import nodes, stats
from gridx.coordinator.services.nodes import node_info
from gridx.coordinator.services.runtime import Runtime


@dataclass
class Metrics:
    """What the coordinator counts as it goes (reset when the process restarts, as counters are)."""

    leases_expired: int = 0
    aggregations: int = 0
    aggregation_seconds: float = 0.0
    requests: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    request_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def observe_request(self, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request and its latency."""
        self.requests[(method, f"{status // 100}xx")] += 1
        self.request_seconds[method] += seconds


async def render(rt: Runtime, m: Metrics) -> str:
    """The Prometheus text exposition of the coordinator's state."""
    reader = rt.db.reader
    by_state = await stats.tasks_by_status(reader, None)
    jobs = await stats.jobs_by_status(reader, None)
    infos = [node_info(rt, r) for r in await nodes.list_nodes(reader, None)]
    lines = [
        "# HELP gridx_tasks Tasks by state.",
        "# TYPE gridx_tasks gauge",
        *(
            f'gridx_tasks{{state="{s}"}} {by_state.get(s, 0)}'
            for s in ("queued", "leased", "succeeded", "failed", "cancelled")
        ),
        "# HELP gridx_jobs Jobs by status.",
        "# TYPE gridx_jobs gauge",
        *(f'gridx_jobs{{status="{s}"}} {n}' for s, n in sorted(jobs.items())),
        "# HELP gridx_nodes Nodes by status.",
        "# TYPE gridx_nodes gauge",
        *(
            f'gridx_nodes{{status="{s}"}} {sum(1 for n in infos if n.status == s)}'
            for s in ("online", "offline", "draining")
        ),
        "# HELP gridx_leases_expired_total Leases that expired and were requeued or failed.",
        "# TYPE gridx_leases_expired_total counter",
        f"gridx_leases_expired_total {m.leases_expired}",
        "# HELP gridx_aggregation_seconds Time spent merging rounds.",
        "# TYPE gridx_aggregation_seconds summary",
        f"gridx_aggregation_seconds_sum {m.aggregation_seconds:.6f}",
        f"gridx_aggregation_seconds_count {m.aggregations}",
        "# HELP gridx_http_requests_total HTTP requests by method and status class.",
        "# TYPE gridx_http_requests_total counter",
        *(
            f'gridx_http_requests_total{{method="{meth}",code="{code}"}} {n}'
            for (meth, code), n in sorted(m.requests.items())
        ),
        "# HELP gridx_http_request_seconds Time spent answering HTTP requests.",
        "# TYPE gridx_http_request_seconds summary",
        *(
            f'gridx_http_request_seconds_sum{{method="{meth}"}} {s:.6f}'
            for meth, s in sorted(m.request_seconds.items())
        ),
        *(
            f'gridx_http_request_seconds_count{{method="{meth}"}} '
            f"{sum(n for (mm, _), n in m.requests.items() if mm == meth)}"
            for meth in sorted(m.request_seconds)
        ),
    ]
    return "\n".join(lines) + "\n"

"""Torch-free arithmetic over what clients report: round metrics, and the replicas' majority."""

from __future__ import annotations

from gridx.schemas.jobs import SUMMED_METRICS


def weighted_metrics(items: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Each metric that every client reported: the sum of counts (`SUMMED_METRICS`, such as
    `samples`), the sample-weighted mean of anything else."""
    if not items:
        return {}
    common = set(items[0][0])
    for metrics, _ in items[1:]:
        common &= set(metrics)
    total = sum(w for _, w in items) or 1.0
    return {
        k: sum(m[k] for m, _ in items)
        if k in SUMMED_METRICS
        else sum(m[k] * w for m, w in items) / total
        for k in sorted(common)
    }


def majority(dist: list[list[float]], tolerance: float, quorum: int) -> list[int] | None:
    """The largest group of copies within `tolerance` of one of them (the earliest such copy
    wins ties), if it has at least `quorum` members; else None (more copies are needed)."""
    best: list[int] = []
    for i in range(len(dist)):
        group = [j for j in range(len(dist)) if dist[i][j] <= tolerance]
        if len(group) > len(best):
            best = group
    return best if len(best) >= quorum else None

"""Dashboard summaries."""

from __future__ import annotations

from typing import Literal

import msgspec


class Overview(msgspec.Struct, kw_only=True):
    """The fleet and the queue at a glance (the caller's jobs; every job for an admin)."""

    nodes_online: int
    nodes_offline: int
    jobs_by_status: dict[str, int]
    tasks_running: int
    tasks_queued: int
    tasks_per_minute: int
    storage_bytes: int = 0
    """Bytes in the blob store: every file some job still needs (the whole coordinator's)."""
    scope: Literal["yours", "everything"] = "everything"
    """Whose nodes, jobs and tasks these count: the caller's own, or (an admin) everyone's."""


class Contributor(msgspec.Struct, kw_only=True):
    """One owner's gift of compute. Credit, BOINC-style: 100 per CPU-hour given, counted by the
    coordinator from each completed task's run time (never from the node's own claim)."""

    owner: str
    nodes: int
    tasks_done: int
    compute_s: float
    credit: float


class FleetSample(msgspec.Struct, kw_only=True):
    """The whole fleet in one sampling period (counts only, nobody's identity)."""

    at: int
    """The period's start, epoch ms."""
    nodes_online: int
    tasks_running: int
    tasks_queued: int
    tasks_done: int
    """Tasks that succeeded during the period."""

"""Nodes and users as the CLI and dashboard see them."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gridx.schemas.agent import Capabilities, DatasetFormat, DatasetInfo

NodeStatus = Literal["online", "resting", "offline", "draining", "banned", "removed"]
"""`resting`: online but taking no task now, by its owner's rules (`NodeInfo.resting` says why)."""


class NodeInfo(msgspec.Struct, kw_only=True):
    """A registered node."""

    id: str
    name: str
    owner: str
    status: NodeStatus
    capabilities: Capabilities
    last_seen: int
    tasks_done: int
    created_at: int
    reputation: float = 1.0
    """(agreed + 1) / (agreed + disagreed + 1) over replicated shards; below the coordinator's
    `min_reputation` the node gets no tasks."""
    agreed: int = 0
    disagreed: int = 0
    streak: int = 0
    """Checked results agreed in a row since it was last outvoted: under adaptive replication
    a node is trusted (checked only now and then) once this is long enough."""
    suspect: bool = False
    """Outvoted since it last earned trust: every result it sends is checked, and replicated
    jobs' tasks reach it only after trusted nodes had their pick."""
    resting: str = ""
    """Why a resting node takes no task now: `paused by its owner (gridx-node resume)`,
    `outside its hours (22:00-07:00)`, `the machine is busy (...)`."""
    datasets: list[DatasetInfo] = []
    """What the node declared it holds (names, columns, row counts; never the data)."""


class DatasetSummary(msgspec.Struct, kw_only=True):
    """A node-local dataset name as the fleet holds it (`GET /datasets`)."""

    name: str
    format: DatasetFormat
    columns: list[str]
    """The columns most of its nodes declare (a node with other columns is left out of jobs)."""
    rows: int
    """Rows over the online nodes that hold it."""
    nodes: int
    """Online nodes that hold it."""
    usable_nodes: int
    """Of those, the ones whose owners let the caller train on it."""
    description: str = ""


class UserInfo(msgspec.Struct, kw_only=True):
    """The caller, as the API key identifies it."""

    id: int
    email: str
    role: Literal["admin", "user"]


class EnrolmentTokenRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a new enrolment token allows: how many registrations, for how long."""

    uses: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    ttl_s: Annotated[int, msgspec.Meta(ge=60, le=30 * 86400)] = 3600


class EnrolmentToken(msgspec.Struct, kw_only=True):
    """A token that registers nodes for its owner and does nothing else (shown once)."""

    token: str
    prefix: str
    uses: int
    expires_at: int
    """Milliseconds since the epoch."""

"""Nodes and users as the CLI and dashboard see them."""

from __future__ import annotations

from typing import Literal

import msgspec

from gridx.schemas.agent import Capabilities

NodeStatus = Literal["online", "offline", "draining"]


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


class UserInfo(msgspec.Struct, kw_only=True):
    """The caller, as the API key identifies it."""

    id: int
    email: str
    role: Literal["admin", "user"]

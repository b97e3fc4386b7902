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


class UserInfo(msgspec.Struct, kw_only=True):
    """The caller, as the API key identifies it."""

    id: int
    email: str
    role: Literal["admin", "user"]

"""Who a request is authenticated as: a user (by API key) or a node (by node token).

The API layer sees callers through these names only; they are the database's rows, read by the
services (`auth.authenticate_user`, `nodes.authenticate`).
"""

from __future__ import annotations

from gridx.coordinator.db.nodes import NodeRow as Node
from gridx.coordinator.db.users import UserRow as User

__all__ = ["Node", "User"]

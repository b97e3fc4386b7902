"""Authenticated nodes, kept in memory so a heartbeat or a poll costs no database read."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Database
from gridx.coordinator.db.nodes import NodeRow
from gridx.coordinator.services.background import Background
from gridx.schemas.agent import Capabilities

NODES_CHANNEL = "gridx_nodes"
"""A node's record changed (drained): payload `<replica id> <node id>`; replicas drop it."""
NODE_CACHE_MS = 60_000
NODE_CACHE_MAX = 100_000


class NodeCache:
    """Token hash -> (node, when it was read). A change made through another replica (a drain)
    arrives as a notification that drops the entry; entries are re-read after `NODE_CACHE_MS`
    whatever happens."""

    def __init__(self, db: Database, replica: str, background: Background) -> None:
        self._db = db
        self._replica = replica
        self._background = background
        self._entries: dict[str, tuple[NodeRow, int]] = {}

    def get(self, token_hash: str, now: int) -> NodeRow | None:
        """The cached node for a token, if read less than `NODE_CACHE_MS` ago."""
        cached = self._entries.get(token_hash)
        return cached[0] if cached is not None and now - cached[1] < NODE_CACHE_MS else None

    def put(self, token_hash: str, node: NodeRow, now: int) -> None:
        """Remember a node just read."""
        if len(self._entries) >= NODE_CACHE_MAX:
            self._entries.clear()
        self._entries[token_hash] = (node, now)

    def set_capabilities(self, node_id: str, capabilities: Capabilities) -> None:
        """The node reported new capabilities (already written)."""
        for token_hash, (cached, at) in list(self._entries.items()):
            if cached.id == node_id:
                fresh = msgspec.structs.replace(cached, capabilities=capabilities)
                self._entries[token_hash] = (fresh, at)

    def forget(self, node_id: str) -> None:
        """Drop this process's cached record of a node."""
        for token_hash, (cached, _) in list(self._entries.items()):
            if cached.id == node_id:
                del self._entries[token_hash]

    def changed(self, node_id: str) -> None:
        """Forget a node's cached record here and on every other replica."""
        self.forget(node_id)
        if self._db.dialect != "sqlite":
            self._background.spawn(
                self._db.notify(NODES_CHANNEL, f"{self._replica} {node_id}"), "notify"
            )

    def on_notification(self, payload: str) -> None:
        """Another replica changed a node: drop it here."""
        sender, _, node_id = payload.partition(" ")
        if sender != self._replica:
            self.forget(node_id)

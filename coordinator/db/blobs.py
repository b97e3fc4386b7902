"""Content-addressed blob records."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_one


class BlobRow(msgspec.Struct, kw_only=True):
    """A stored file, named by its sha256."""

    sha256: str
    size: int
    storage_key: str


UPSERT = """
INSERT INTO blobs (sha256, size, storage_key, created_at) VALUES (:sha256, :size, :key, :now)
ON CONFLICT (sha256) DO NOTHING
"""
GET = "SELECT sha256, size, storage_key FROM blobs WHERE sha256 = :sha256"


async def record(conn: Conn, sha256: str, size: int, key: str, now: int) -> None:
    """Remember a stored blob (idempotent: the same content is stored once)."""
    await conn.execute(UPSERT, {"sha256": sha256, "size": size, "key": key, "now": now})


async def get(conn: Conn, sha256: str) -> BlobRow | None:
    """A blob record by sha256."""
    return await fetch_one(conn, GET, {"sha256": sha256}, BlobRow)

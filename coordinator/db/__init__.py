"""The database layer: raw SQL per table (`jobs`, `tasks`, ...) over one connection contract
(`connection.Database`), with SQLite (embedded default) and PostgreSQL (scale-out) engines."""

from __future__ import annotations

from pathlib import Path

from gridx.coordinator.db.connection import Database


async def connect(url: str) -> Database:
    """Open (creating and migrating as needed) the database a URL names.

    `sqlite:///relative/or/absolute/path.db` or `postgresql://user:pass@host:port/dbname`.
    """
    if url.startswith("sqlite:///"):
        from gridx.coordinator.db.sqlite import SqliteDatabase

        return await SqliteDatabase.open(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from gridx.coordinator.db.postgres import PostgresDatabase

        return await PostgresDatabase.open(url)
    raise ValueError(f"unknown database URL {url!r}: use sqlite:///PATH or postgresql://...")

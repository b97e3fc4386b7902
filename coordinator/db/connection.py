"""SQLite connections: one writer (WAL, BEGIN IMMEDIATE through `transaction()`), one reader."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TypeVar

import aiosqlite
import msgspec

T = TypeVar("T")

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


def migrations() -> list[tuple[int, str]]:
    """The numbered migration scripts, in order: [(number, sql), ...]."""
    folder = resources.files("gridx.coordinator.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    found.sort()
    numbers = [n for n, _ in found]
    if numbers != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {numbers}")
    return found


async def _open(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)  # autocommit; BEGIN explicitly
    conn.row_factory = sqlite3.Row
    for pragma in _PRAGMAS:
        await conn.execute(pragma)
    return conn


async def migrate(conn: aiosqlite.Connection) -> int:
    """Apply migrations newer than `PRAGMA user_version`; returns the resulting version."""
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    version = int(rows[0][0]) if rows else 0
    for number, sql in migrations():
        if number <= version:
            continue
        await conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={number};\nCOMMIT;")
        version = number
    return version


class Database:
    """The coordinator's database: a single writer connection and a reader connection.

    SQLite allows one writer at a time; funnelling every write through one connection and an
    asyncio lock keeps transactions from interleaving and avoids `SQLITE_BUSY` storms.
    """

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.writer = writer
        self.reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (creating and migrating if needed) the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await _open(path)
        await migrate(writer)
        reader = await _open(path)
        return cls(writer, reader)

    async def close(self) -> None:
        """Close both connections."""
        await self.reader.close()
        await self.writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (`BEGIN IMMEDIATE`), committed on success, rolled back on error."""
        async with self._write_lock:
            await self.writer.execute("BEGIN IMMEDIATE")
            try:
                yield self.writer
            except BaseException:
                await self.writer.execute("ROLLBACK")
                raise
            await self.writer.execute("COMMIT")


async def rows_of(
    conn: aiosqlite.Connection, sql: str, params: dict[str, object]
) -> list[sqlite3.Row]:
    """Run `sql` and read all its rows in one step on the connection's thread.

    Never hold a cursor open across an await: coroutines share the read connection, and a
    statement left un-finished keeps its read transaction (and so an old snapshot) open for
    every query that follows on that connection.
    """
    return list(await conn.execute_fetchall(sql, params))


async def fetch_one(
    conn: aiosqlite.Connection, sql: str, params: dict[str, object], kind: type[T]
) -> T | None:
    """Run `sql` and convert its first row (if any) to `kind`."""
    rows = await rows_of(conn, sql, params)
    return msgspec.convert(dict(rows[0]), kind) if rows else None


async def fetch_all(
    conn: aiosqlite.Connection, sql: str, params: dict[str, object], kind: type[T]
) -> list[T]:
    """Run `sql` and convert every row to `kind`."""
    return [msgspec.convert(dict(r), kind) for r in await rows_of(conn, sql, params)]


async def fetch_value(conn: aiosqlite.Connection, sql: str, params: dict[str, object]) -> object:
    """Run `sql` and return the first column of its first row (None if no row)."""
    rows = await rows_of(conn, sql, params)
    return rows[0][0] if rows else None

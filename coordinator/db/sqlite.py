"""The embedded engine: one SQLite file, a writer (WAL, `BEGIN IMMEDIATE`) and a reader."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import aiosqlite

from gridx.coordinator.db.connection import Params, Row, UniqueViolation, migrations

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


class SqliteConn:
    """The contract's `Conn` over one aiosqlite connection."""

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def execute(self, sql: str, params: Params | None = None) -> None:
        """Run one statement."""
        try:
            await self.raw.execute(sql, params or {})
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from exc
            raise

    async def executemany(self, sql: str, params: Sequence[Params]) -> None:
        """Run one statement once per parameter set."""
        await self.raw.executemany(sql, params)

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run `sql` and read all its rows in one step on the connection's thread.

        Never hold a cursor open across an await: coroutines share the read connection, and a
        statement left un-finished keeps its read transaction (and so an old snapshot) open for
        every query that follows on that connection.
        """
        try:
            return list(await self.raw.execute_fetchall(sql, params or {}))
        except sqlite3.IntegrityError as exc:
            if "UNIQUE" in str(exc):
                raise UniqueViolation(str(exc)) from exc
            raise


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
    for number, sql in migrations("sqlite"):
        if number <= version:
            continue
        await conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={number};\nCOMMIT;")
        version = number
    return version


class SqliteDatabase:
    """A single writer connection and a reader connection on one file.

    SQLite allows one writer at a time; funnelling every write through one connection and an
    asyncio lock keeps transactions from interleaving and avoids `SQLITE_BUSY` storms.
    """

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.writer = SqliteConn(writer)
        self.reader = SqliteConn(reader)
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """Open (creating and migrating if needed) the database at `path`."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # tokens live in it
        writer = await _open(path)
        await migrate(writer)
        reader = await _open(path)
        return cls(writer, reader)

    async def close(self) -> None:
        """Close both connections."""
        await self.reader.raw.close()
        await self.writer.raw.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteConn]:
        """A write transaction (`BEGIN IMMEDIATE`), committed on success, rolled back on error."""
        async with self._write_lock:
            await self.writer.raw.execute("BEGIN IMMEDIATE")
            try:
                yield self.writer
            except BaseException:
                await self.writer.raw.execute("ROLLBACK")
                raise
            await self.writer.raw.execute("COMMIT")

    async def notify(self, channel: str, payload: str) -> None:
        """One process owns a SQLite file: nobody else to tell."""

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """One process owns a SQLite file: nothing will arrive."""

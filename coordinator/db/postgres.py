"""The scale-out engine: PostgreSQL through an asyncpg pool, shared by any number of replicas.

The table modules' `:name` parameters become `$n` here; transactions run at READ COMMITTED,
with row locks (`FOR UPDATE SKIP LOCKED` in claims, guarded `UPDATE`s elsewhere) deciding races
between replicas; wake-ups cross replicas with LISTEN/NOTIFY.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg

from gridx.coordinator.db.connection import Params, Row, UniqueViolation, migrations

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_MIGRATION_LOCK = 0x67726964  # pg_advisory_xact_lock key: one replica migrates at a time


@functools.lru_cache(maxsize=1024)
def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """`:name` parameters rewritten as `$1..$n`, and the names in that order."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return _PARAM.sub(number, sql), tuple(names)


def _args(sql: str, params: Params | None) -> tuple[str, list[object]]:
    text, names = positional(sql)
    values = params or {}
    return text, [values[n] for n in names]


class PgConn:
    """The contract's `Conn` over a pool (reads) or one connection in a transaction (writes)."""

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, raw: asyncpg.Connection | asyncpg.Pool) -> None:
        self.raw: Any = raw

    async def execute(self, sql: str, params: Params | None = None) -> None:
        """Run one statement."""
        text, args = _args(sql, params)
        try:
            await self.raw.execute(text, *args)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from exc

    async def executemany(self, sql: str, params: Sequence[Params]) -> None:
        """Run one statement once per parameter set (one round trip, pipelined)."""
        if not params:
            return
        text, names = positional(sql)
        await self.raw.executemany(text, [[p[n] for n in names] for p in params])

    async def fetch(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run one statement and read all its rows."""
        text, args = _args(sql, params)
        try:
            return list(await self.raw.fetch(text, *args))
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from exc


async def migrate(pool: asyncpg.Pool) -> int:
    """Apply the migrations this database lacks (under an advisory lock); returns the version."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        version = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_version"))
        for number, sql in migrations("postgresql"):
            if number <= version:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", number)
            version = number
    return version


class PostgresDatabase:
    """A pool for transactions, a pool for queries (so reads never queue behind long write
    transactions), and one connection that LISTENs."""

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: str, pool: asyncpg.Pool, read_pool: asyncpg.Pool) -> None:
        self.url = url
        self.pool = pool
        self.read_pool = read_pool
        self.reader = PgConn(read_pool)
        self._listener: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str, size: int = 10) -> PostgresDatabase:
        """Connect and migrate."""
        pool = await asyncpg.create_pool(url, min_size=1, max_size=size)
        await migrate(pool)
        read_pool = await asyncpg.create_pool(url, min_size=1, max_size=size)
        return cls(url, pool, read_pool)

    async def close(self) -> None:
        """Close the listener and the pools."""
        if self._listener is not None:
            await self._listener.close()
        await self.read_pool.close()
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConn]:
        """A READ COMMITTED transaction on one pooled connection."""
        async with self.pool.acquire() as raw, raw.transaction():
            yield PgConn(raw)

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY every replica listening on `channel`."""
        await self.pool.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """LISTEN on `channel` on a connection of its own."""
        if self._listener is None:
            self._listener = await asyncpg.connect(self.url)
        await self._listener.add_listener(channel, lambda _c, _pid, _ch, payload: callback(payload))

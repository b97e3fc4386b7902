import re
from collections.abc import Callable
from pathlib import Path

import pytest

from gridx.coordinator.db import connect
from gridx.coordinator.db.connection import Database, UniqueViolation, migrations
from gridx.coordinator.errors import Forbidden
from gridx.coordinator.storage.signing import UrlSigner

TABLES = {
    "users",
    "api_keys",
    "nodes",
    "blobs",
    "jobs",
    "shards",
    "rounds",
    "tasks",
    "attempts",
    "events",
}


async def _schema(db: Database) -> list[tuple[object, ...]]:
    if db.dialect == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master ORDER BY name"
    else:
        sql = (
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"
        )
    return [tuple(r) for r in await db.reader.fetch(sql)]


async def _version(db: Database) -> int:
    sql = (
        "PRAGMA user_version"
        if db.dialect == "sqlite"
        else "SELECT max(version) FROM schema_version"
    )
    return int((await db.reader.fetch(sql))[0][0])


async def test_fresh_database_is_at_the_latest_version_and_reopening_changes_nothing(
    new_database: Callable[[], str],
) -> None:
    url = new_database()
    db = await connect(url)
    assert await _version(db) == len(migrations(db.dialect))
    first = await _schema(db)
    assert {r[0] for r in first} >= TABLES
    await db.close()
    db = await connect(url)
    assert await _schema(db) == first
    assert await _version(db) == len(migrations(db.dialect))
    if db.dialect == "sqlite":
        assert (await db.reader.fetch("PRAGMA journal_mode"))[0][0] == "wal"
    await db.close()


async def test_a_failed_transaction_rolls_back(new_database: Callable[[], str]) -> None:
    db = await connect(new_database())
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO users (email, role, created_at) VALUES ('a@b', 'user', 0)"
            )
            raise RuntimeError("boom")
    assert (await db.reader.fetch("SELECT count(*) FROM users"))[0][0] == 0
    await db.close()


async def test_a_duplicate_is_the_same_error_on_both_engines(
    new_database: Callable[[], str],
) -> None:
    db = await connect(new_database())
    insert = "INSERT INTO users (email, role, created_at) VALUES ('a@b', 'user', 0)"
    async with db.transaction() as conn:
        await conn.execute(insert)
    with pytest.raises(UniqueViolation):
        async with db.transaction() as conn:
            await conn.execute(insert)
    await db.close()


def test_both_engines_share_one_numbered_list() -> None:
    lite, pg = migrations("sqlite"), migrations("postgresql")
    assert [n for n, _ in lite] == [n for n, _ in pg] == list(range(1, len(lite) + 1))
    assert not any(re.search(r"\bINTEGER\b|AUTOINCREMENT", sql) for _, sql in pg)
    assert "json_extract" in lite[2][1] and "json_extract" not in pg[2][1]


async def test_version_3_copies_placement_out_of_existing_configs(tmp_path: Path) -> None:
    import aiosqlite

    path = tmp_path / "old.db"
    async with aiosqlite.connect(path) as raw:  # a database as version 2 left it
        script = "\n".join(sql for n, sql in migrations("sqlite") if n <= 2)
        await raw.executescript(script + "\nPRAGMA user_version=2;")
        await raw.execute("INSERT INTO users (email, role, created_at) VALUES ('o@x', 'user', 0)")
        await raw.execute("INSERT INTO blobs VALUES ('c', 1, 'c', 0)")
        await raw.execute(
            "INSERT INTO jobs (id, owner_id, name, status, config, code_sha, created_at, "
            "updated_at) VALUES ('j', 1, 'j', 'queued', :c, 'c', 0, 0)",
            {"c": '{"require_docker":true,"min_cpus":4,"arch":"aarch64"}'},
        )
        await raw.commit()
    db = await connect(f"sqlite:///{path}")
    row = dict(
        (await db.reader.fetch("SELECT require_docker, require_gpu, min_cpus, arch FROM jobs"))[0]
    )
    assert row == {"require_docker": 1, "require_gpu": 0, "min_cpus": 4, "arch": "aarch64"}
    await db.close()


def test_signed_urls_expire_and_resist_tampering() -> None:
    signer = UrlSigner(b"secret", "http://coord")
    url = signer.sign("GET", "/blobs/abc", "abc", 1000)
    assert url.startswith("http://coord/blobs/abc?exp=1000&sig=")
    sig = url.split("sig=")[1]
    signer.verify("GET", "abc", 1000, sig, now_ms=999)
    with pytest.raises(Forbidden, match="expired"):
        signer.verify("GET", "abc", 1000, sig, now_ms=1001)
    with pytest.raises(Forbidden, match="invalid"):
        signer.verify("GET", "abd", 1000, sig, now_ms=0)  # another blob
    with pytest.raises(Forbidden, match="invalid"):
        signer.verify("GET", "abc", 9999, sig, now_ms=0)  # a stretched expiry
    with pytest.raises(Forbidden, match="invalid"):
        UrlSigner(b"other").verify("GET", "abc", 1000, sig, now_ms=0)
    with pytest.raises(Forbidden, match="invalid"):  # found by schemathesis: was a 500
        signer.verify("GET", "ab\u00e9c", 1000, "\U000f3f14\u00b1", now_ms=0)

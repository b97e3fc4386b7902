from pathlib import Path

import pytest

from gridx.coordinator.db.connection import Database, migrate, migrations
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


async def test_fresh_database_is_at_the_latest_version_and_reopening_changes_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "g.db"
    db = await Database.open(path)
    async with db.reader.execute("PRAGMA user_version") as cur:
        assert (await cur.fetchone())[0] == len(migrations())
    async with db.reader.execute("SELECT name, sql FROM sqlite_master ORDER BY name") as cur:
        first = await cur.fetchall()
    assert {r[0] for r in first} >= TABLES
    assert await migrate(db.writer) == len(migrations())  # nothing left to apply
    await db.close()
    db = await Database.open(path)
    async with db.reader.execute("SELECT name, sql FROM sqlite_master ORDER BY name") as cur:
        assert [tuple(r) for r in await cur.fetchall()] == [tuple(r) for r in first]
    async with db.reader.execute("PRAGMA journal_mode") as cur:
        assert (await cur.fetchone())[0] == "wal"
    await db.close()


async def test_a_failed_transaction_rolls_back(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "g.db")
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute(
                "INSERT INTO users (email, role, created_at) VALUES ('a@b', 'user', 0)"
            )
            raise RuntimeError("boom")
    async with db.reader.execute("SELECT count(*) FROM users") as cur:
        assert (await cur.fetchone())[0] == 0
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

"""The storage contract on local disk, on a real S3 server (SeaweedFS on 127.0.0.1), and on a real
Supabase Storage server, through the `supabase` package (`supabase://`) and through its S3
endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gridx.coordinator.clock import ManualClock
from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.coordinator.storage.base import Storage, parse_storage_url
from gridx.coordinator.storage.local import LocalStorage
from gridx.coordinator.storage.s3 import S3Storage
from gridx.coordinator.storage.signing import UrlSigner
from gridx.coordinator.storage.supabase import SupabaseStorage
from tests.support.servers import S3Server, SupabaseServer

PART = 5 << 20  # S3's smallest multipart part
Remote = S3Storage | SupabaseStorage


async def _open(kind: str, request: pytest.FixtureRequest, tmp_path: Path, **kw: int) -> Remote:
    """A remote store on a fresh bucket: SeaweedFS, Supabase (its API, or its S3 endpoint)."""
    if kind == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        return await S3Storage.open(
            server.new_bucket_url(), tmp_path / "cache", endpoint=server.endpoint, **kw
        )
    supabase: SupabaseServer = request.getfixturevalue("supabase_server")
    if kind == "supabase-s3":
        return await S3Storage.open(
            supabase.new_bucket_url().replace("supabase://", "s3://"),
            tmp_path / "cache",
            endpoint=supabase.s3_endpoint,
            keys=supabase.s3_keys,
            **kw,
        )
    kw.pop("part_size", None)
    return await SupabaseStorage.open(
        supabase.new_bucket_url(),
        tmp_path / "cache",
        api=supabase.url,
        service_key=supabase.service_key,
        **kw,
    )


SUPABASE = [pytest.param(k, marks=pytest.mark.supabase) for k in ("supabase", "supabase-s3")]


@pytest.fixture(params=["local", "s3", *SUPABASE])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "blobs", UrlSigner(b"k"), ManualClock())
        return
    remote = await _open(request.param, request, tmp_path, part_size=PART)
    yield remote
    await remote.close()


@pytest.fixture(params=["s3", *SUPABASE])
async def remote(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Remote]:
    """The stores that keep blobs elsewhere and a cache of copies here."""
    store = await _open(request.param, request, tmp_path, part_size=PART)
    yield store
    await store.close()


def _temp(store: Storage, data: bytes) -> Path:
    path = store.temp_path()
    path.write_bytes(data)
    return path


async def _chunks(data: bytes, size: int = 1 << 16) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_blobs_are_named_by_content_and_stored_once(store: Storage) -> None:
    data = os.urandom(100_000)
    sha = hashlib.sha256(data).hexdigest()
    first = await store.adopt(_temp(store, data))
    second = await store.adopt(_temp(store, data))
    assert first == second == (sha, len(data), first[2])
    assert (await store.local_path(first[2])).read_bytes() == data
    assert list(store.tmp.iterdir()) == []  # temp files were consumed


async def test_a_stream_over_its_limit_is_refused_and_nothing_is_kept(store: Storage) -> None:
    with pytest.raises(TooLarge):
        await store.write_stream(_chunks(b"x" * 10_000), 9_999, "the file")
    assert list(store.tmp.iterdir()) == []
    _, size, key = await store.write_stream(_chunks(b"y" * 10_000), 10_000, "the file")
    assert size == 10_000 and (await store.local_path(key)).read_bytes() == b"y" * 10_000


async def test_download_links_grant_exactly_that_blob(store: Storage) -> None:
    data = b"weights" * 1000
    sha, _, key = await store.adopt(_temp(store, data))
    url = await store.download_url(sha, key, 60, "t1", "lease1")
    if isinstance(store, LocalStorage):  # the coordinator's /blobs route, bound to the lease
        path, _, query = url.partition("?")
        params = dict(p.split("=") for p in query.split("&"))
        assert path == f"/blobs/{sha}" and (params["task"], params["lease"]) == ("t1", "lease1")
        resource = f"{sha}:t1:lease1"
        store.signer.verify(
            "GET", resource, int(params["exp"]), params["sig"], store.clock.now_ms()
        )
        return
    async with httpx.AsyncClient() as http:  # presigned: straight from the bucket
        got = await http.get(url)
        assert got.status_code == 200 and got.content == data
        tampered = await http.get(url.replace(sha, hashlib.sha256(b"other").hexdigest()))
        assert tampered.status_code in (400, 403)


async def test_results_put_through_the_upload_link_are_verified_on_receipt(
    store: Storage,
) -> None:
    data = os.urandom(50_000)
    sha = hashlib.sha256(data).hexdigest()
    url = await store.upload_url("t1", "lease1", 60)
    if isinstance(store, LocalStorage):  # the coordinator's own route receives and attaches
        assert url.startswith("/agent/results/t1?lease=lease1&")
        assert await store.receive_upload("t1", "lease1", sha, 1 << 20) is None
        return
    async with httpx.AsyncClient() as http:
        assert (await http.put(url, content=data)).status_code == 200
        assert await store.receive_upload("t1", "other-lease", sha, 1 << 20) is None
        stored = await store.receive_upload("t1", "lease1", sha, 1 << 20)
        assert stored is not None and stored[:2] == (sha, len(data))
        assert (await store.local_path(stored[2])).read_bytes() == data
        assert await store.receive_upload("t1", "lease1", sha, 1 << 20) is None  # consumed

        assert (await http.put(url, content=data)).status_code == 200
        with pytest.raises(InvalidInput):  # a node claiming another hash
            await store.receive_upload("t1", "lease1", "0" * 64, 1 << 20)
        assert await store.receive_upload("t1", "lease1", sha, 1 << 20) is None  # dropped

        assert (await http.put(url, content=data)).status_code == 200
        with pytest.raises(TooLarge):
            await store.receive_upload("t1", "lease1", sha, len(data) - 1)


async def test_large_files_go_up_in_parts_and_come_back_verified(
    remote: Remote, request: pytest.FixtureRequest
) -> None:
    data = os.urandom(2 * PART + 12345)  # three S3 parts, two resumable chunks of Supabase's
    sha, size, key = await remote.adopt(_temp(remote, data))
    assert size == len(data)
    if request.node.callspec.params["remote"] == "s3":
        head = await remote.client.head_object(Bucket=remote.bucket, Key=key)  # type: ignore[union-attr]
        assert "-3" in head["ETag"]  # a multipart object's ETag ends with its part count
    else:  # Supabase's S3 ETags do not count parts: its log does (written a moment later)
        server: SupabaseServer = request.getfixturevalue("supabase_server")
        part = "partNumber=" if isinstance(remote, S3Storage) else "/upload/resumable/"
        want, deadline = (3 if isinstance(remote, S3Storage) else 2), time.monotonic() + 15
        while True:
            urls = [str(r["req"]["url"]) for r in server.requests()]  # type: ignore[index]
            if sum(part in url for url in urls) >= want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert sum(part in url for url in urls) >= want, urls
    remote.copies.drop(sha)  # a fresh replica: nothing cached
    assert hashlib.sha256((await remote.local_path(key)).read_bytes()).hexdigest() == sha


@pytest.mark.parametrize("kind", ["s3", *SUPABASE])
async def test_the_cache_of_copies_stays_under_its_cap_and_never_drops_a_pinned_copy(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = await _open(kind, request, tmp_path, cache_bytes=3000)
    copies = store.copies
    try:
        blobs = [await store.adopt(_temp(store, os.urandom(1000))) for _ in range(6)]
        old = time.time() - 3600  # none used in the last minute
        for sha, _, _ in blobs:
            os.utime(copies.path(sha), (old, old))
        first = blobs[0][0]
        with store.pinned([first]):  # a merge is reading it
            for _ in range(4):
                sha, _, _ = await store.adopt(_temp(store, os.urandom(1000)))
                os.utime(copies.path(sha), (old, old))  # time passes
                cached = list(copies.root.glob("*/*"))
                on_disk = sum(p.stat().st_size for p in cached if p.parent.name != "tmp")
                assert copies.path(first).exists()
        assert on_disk <= 3000 + 1000  # under the cap, give or take the copy just kept
        # an evicted copy comes back from the bucket, verified
        evicted = next(k for sha, _, k in blobs[1:] if not copies.path(sha).exists())
        assert (await store.local_path(evicted)).stat().st_size == 1000
    finally:
        await store.close()


def test_storage_urls_name_a_bucket_and_an_optional_prefix() -> None:
    assert parse_storage_url("s3://b") == ("s3", "b", "")
    assert parse_storage_url("supabase://b/a/b/") == ("supabase", "b", "a/b/")
    for bad in ("b", "s3://", "file:///x", "gs://b"):
        with pytest.raises(ValueError):
            parse_storage_url(bad)


async def test_supabase_refuses_a_wrong_key_and_a_public_bucket_saying_what_to_do(
    supabase_server: SupabaseServer, tmp_path: Path
) -> None:
    url = supabase_server.new_bucket_url()
    anon = supabase_server.values["SUPABASE_ANON_KEY"]
    for key, says in (("not-a-key", "service_role key"), (anon, "service_role key")):
        with pytest.raises(RuntimeError, match=says):
            await SupabaseStorage.open(
                url, tmp_path / "c", api=supabase_server.url, service_key=key
            )
    store = await SupabaseStorage.open(
        url, tmp_path / "c", api=supabase_server.url, service_key=supabase_server.service_key
    )
    try:
        bucket = await store.client.get_bucket(store.bucket)
        assert bucket.public is False  # made private
        await store.client.update_bucket(store.bucket, {"public": True})
        with pytest.raises(RuntimeError, match="is public"):
            await store.ensure_bucket()
    finally:
        await store.close()


def test_supabase_settings_take_supabases_own_names_and_say_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gridx.coordinator import storage
    from gridx.coordinator.settings import settings_from_env
    from gridx.coordinator.storage.supabase import storage_api_url
    from gridx.schemas.envconfig import ConfigError

    for name in ("SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "GRIDX_SUPABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIDX_STORAGE_URL", "supabase://models")
    with pytest.raises(ConfigError, match="needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"):
        storage.check(settings_from_env())
    monkeypatch.setenv("SUPABASE_URL", "https://abc.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", "k")
    settings = settings_from_env()
    storage.check(settings)
    assert (settings.supabase_url, settings.supabase_service_role_key) == (
        "https://abc.supabase.co",
        "k",
    )
    monkeypatch.setenv("GRIDX_SUPABASE_URL", "https://other.supabase.co/")  # ours wins
    assert storage_api_url(settings_from_env().supabase_url) == (
        "https://other.supabase.co/storage/v1"
    )
    assert storage_api_url("https://x", "http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    monkeypatch.setenv("GRIDX_STORAGE_URL", "gs://b")
    with pytest.raises(ConfigError, match="GRIDX_STORAGE_URL"):
        storage.check(settings_from_env())

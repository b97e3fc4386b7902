"""The storage contract on local disk and on a real S3 server (SeaweedFS on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gridx.coordinator.clock import ManualClock
from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.coordinator.storage.base import Storage
from gridx.coordinator.storage.local import LocalStorage
from gridx.coordinator.storage.s3 import S3Storage, parse_storage_url
from gridx.coordinator.storage.signing import UrlSigner
from tests.support.servers import S3Server

PART = 5 << 20  # S3's smallest multipart part


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "blobs", UrlSigner(b"k"), ManualClock())
        return
    server: S3Server = request.getfixturevalue("s3_server")
    s3 = await S3Storage.open(
        server.new_bucket_url(), tmp_path / "cache", endpoint=server.endpoint, part_size=PART
    )
    yield s3
    await s3.close()


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
        assert tampered.status_code == 403


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
    s3_server: S3Server, tmp_path: Path
) -> None:
    s3 = await S3Storage.open(
        s3_server.new_bucket_url(), tmp_path / "cache", endpoint=s3_server.endpoint, part_size=PART
    )
    try:
        data = os.urandom(2 * PART + 12345)  # three parts
        sha, size, key = await s3.adopt(_temp(s3, data))
        assert size == len(data)
        head = await s3.client.head_object(Bucket=s3.bucket, Key=key)
        assert "-3" in head["ETag"]  # a multipart object's ETag ends with its part count
        shutil.rmtree(s3.cache / sha[:2])  # a fresh replica: nothing cached
        assert hashlib.sha256((await s3.local_path(key)).read_bytes()).hexdigest() == sha
    finally:
        await s3.close()


async def test_the_s3_cache_stays_under_its_cap_and_never_drops_a_pinned_copy(
    s3_server: S3Server, tmp_path: Path
) -> None:
    s3 = await S3Storage.open(
        s3_server.new_bucket_url(), tmp_path / "cache", endpoint=s3_server.endpoint,
        cache_bytes=3000,
    )  # fmt: skip
    try:
        blobs = [await s3.adopt(_temp(s3, os.urandom(1000))) for _ in range(6)]
        old = time.time() - 3600  # none used in the last minute
        for sha, _, _ in blobs:
            os.utime(s3.cache / sha[:2] / sha, (old, old))
        first = blobs[0][0]
        with s3.pinned([first]):  # a merge is reading it
            for _ in range(4):
                sha, _, _ = await s3.adopt(_temp(s3, os.urandom(1000)))
                os.utime(s3.cache / sha[:2] / sha, (old, old))  # time passes
                cached = list(s3.cache.glob("*/*"))
                on_disk = sum(p.stat().st_size for p in cached if p.parent.name != "tmp")
                assert (s3.cache / first[:2] / first).exists()
        assert on_disk <= 3000 + 1000  # under the cap, give or take the copy just kept
        # an evicted copy comes back from the bucket, verified
        evicted = next(k for sha, _, k in blobs[1:] if not (s3.cache / sha[:2] / sha).exists())
        assert (await s3.local_path(evicted)).stat().st_size == 1000
    finally:
        await s3.close()


def test_storage_urls_name_a_bucket_and_an_optional_prefix() -> None:
    assert parse_storage_url("s3://b") == ("b", "")
    assert parse_storage_url("s3://b/a/b/") == ("b", "a/b/")
    for bad in ("b", "s3://", "file:///x"):
        with pytest.raises(ValueError):
            parse_storage_url(bad)

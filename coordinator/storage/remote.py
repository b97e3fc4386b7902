"""The half of the storage contract that every store elsewhere shares (an S3 bucket, a Supabase
Storage bucket): content-addressed keys, a cache of verified copies, results checked on receipt.
A subclass moves the bytes (`_stat`, `_put`, `_copy`, `_remove`, `_download`) and signs links.

Keys: `<prefix>blobs/ab/<sha256>` for content-addressed blobs, `<prefix>incoming/<task>/<lease>`
for a result a node put through its signed link that the coordinator has not verified yet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import anyio.to_thread

from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.coordinator.storage.base import Stored
from gridx.coordinator.storage.cache import DEFAULT_CACHE_BYTES, BlobCache
from gridx.coordinator.storage.local import file_sha256, spool


class RemoteStorage:
    """The storage contract over a remote bucket, but for its transfers and links."""

    def __init__(self, prefix: str, cache: Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.prefix = prefix
        self.copies = BlobCache(cache, cache_bytes)
        self.tmp = self.copies.tmp

    # --- what a store moves bytes with --------------------------------------------------------
    async def _stat(self, key: str) -> tuple[int, int] | None:
        """(size, last written in ms on the store's clock) of an object; None without one."""
        raise NotImplementedError

    async def _put(self, path: Path, key: str) -> None:
        """Upload a local file to `key`, replacing what is there."""
        raise NotImplementedError

    async def _copy(self, source: str, dest: str) -> None:
        """Copy an object within the bucket, replacing `dest`; onto itself it renews the
        object's last-written time (it is being stored again: the sweeper must not take it)."""
        raise NotImplementedError

    async def _remove(self, key: str) -> None:
        raise NotImplementedError

    async def _download(self, key: str, dest: Path, limit: int | None = None) -> tuple[str, int]:
        """Stream an object into `dest`; its (sha256, size).

        Raises:
            TooLarge: it is over `limit` bytes.
        """
        raise NotImplementedError

    # --- the contract -------------------------------------------------------------------------
    def blob_key(self, sha256: str) -> str:
        """Where a blob lives in the bucket."""
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256}"

    def incoming_key(self, task_id: str, lease: str) -> str:
        """Where the node holding `lease` puts the task's result."""
        return f"{self.prefix}incoming/{task_id}/{lease}"

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh file in the spool folder."""
        return self.copies.temp_path(suffix)

    def pinned(self, shas: Iterable[str]) -> AbstractContextManager[None]:
        """Keep these blobs' cached copies while the block runs (a merge reads them)."""
        return self.copies.pinned(shas)

    def free_bytes(self) -> int | None:
        """The bucket's space is the store's business."""
        return None

    async def _store(self, key: str, size: int, source: Path | str) -> None:
        """Make `key` hold these bytes (a local file, or an object of the bucket), once: an
        object already there is renewed instead of sent again."""
        there = await self._stat(key)
        if there is not None and there[0] == size:
            await self._copy(key, key)
        elif isinstance(source, Path):
            await self._put(source, key)
        else:
            await self._copy(source, key)

    async def adopt(self, tmp_path: Path) -> Stored:
        """Upload a finished temp file under its hash (once), keeping it as the cached copy."""
        sha = await anyio.to_thread.run_sync(file_sha256, tmp_path)
        size = tmp_path.stat().st_size
        key = self.blob_key(sha)
        await self._store(key, size, tmp_path)
        self.copies.keep(tmp_path, sha)
        return sha, size, key

    async def write_stream(self, chunks: AsyncIterator[bytes], limit: int, what: str) -> Stored:
        """Spool a stream locally (refusing it past `limit`), then upload it."""
        tmp = self.temp_path()
        await spool(tmp, chunks, limit, what)
        return await self.adopt(tmp)

    async def local_path(self, key: str) -> Path:
        """The cached copy, fetched (and its hash checked against its key) on first use."""

        async def fetch(key: str, dest: Path) -> str:
            return (await self._download(key, dest))[0]

        return await self.copies.get(key.rsplit("/", 1)[-1], key, fetch)

    async def delete(self, key: str, written_before_ms: int) -> bool:
        """Delete the object (and the cached copy) unless it was written at or after
        `written_before_ms`."""
        there = await self._stat(key)
        if there is None or there[1] >= written_before_ms:
            return False
        await self._remove(key)
        self.copies.drop(key.rsplit("/", 1)[-1])
        return True

    async def receive_upload(
        self, task_id: str, lease: str, sha256: str, limit: int
    ) -> Stored | None:
        """Verify an incoming result (size, sha256), then file it under its hash. A refused one
        is deleted; one the check could not finish (the store unreachable) stays for a retry."""
        incoming = self.incoming_key(task_id, lease)
        there = await self._stat(incoming)
        if there is None:
            return None
        tmp = self.temp_path()
        try:
            if there[0] > limit:
                raise TooLarge(f"the result file is larger than the limit of {limit} bytes")
            got, size = await self._download(incoming, tmp, limit)
            if got != sha256:
                raise InvalidInput(
                    "the uploaded result does not hash to result_sha256; upload it again"
                )
            key = self.blob_key(got)
            await self._store(key, size, incoming)
            self.copies.keep(tmp, got)
        except (TooLarge, InvalidInput):
            await self._remove(incoming)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        await self._remove(incoming)
        return got, size, key

"""Content-addressed blob storage on local disk: `blobs/ab/cdef...` named by sha256."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import anyio
import anyio.to_thread

from gridx.coordinator.clock import Clock
from gridx.coordinator.errors import StorageFull, TooLarge
from gridx.coordinator.storage.base import Stored
from gridx.coordinator.storage.signing import UrlSigner

CHUNK = 1 << 20
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""The errors of a write the disk has no room for."""


def disk_full(what: str) -> StorageFull:
    """The answer to a write the disk had no room for: nothing of `what` was kept."""
    return StorageFull(
        f"the coordinator is out of disk space; {what} was not kept, send it again later"
    )


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def spool(tmp: Path, chunks: AsyncIterator[bytes], limit: int, what: str) -> str:
    """Write a stream to `tmp`, hashing as it arrives; returns its sha256.

    Raises:
        TooLarge: the stream exceeded `limit` (the file is removed).
    """
    digest = hashlib.sha256()
    size = 0
    try:
        async with await anyio.open_file(tmp, "wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"{what} is larger than the limit of {limit} bytes")
                digest.update(chunk)
                await fh.write(chunk)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in DISK_FULL:
            raise disk_full(what) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def blob_key(sha256: str) -> str:
    """The storage key of a blob (a relative path derived only from its hash)."""
    return f"{sha256[:2]}/{sha256}"


class LocalStorage:
    """Blobs as files under one root. Writes go to a temp file first, then an atomic rename.

    Nodes fetch and upload through the coordinator's signed `/blobs/...` and
    `/agent/results/...` routes.
    """

    def __init__(self, root: Path, signer: UrlSigner, clock: Clock) -> None:
        self.root = root
        self.signer = signer
        self.clock = clock
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file behind a storage key."""
        return self.root / key

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path in the store's temp folder (same file system, so renames are atomic)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def _place(self, tmp_path: Path, sha: str) -> Stored:
        key = blob_key(sha)
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = tmp_path.stat().st_size
        written = self.clock.now_ms() / 1000  # "last written" on the store's own clock
        os.utime(tmp_path, (written, written))
        os.replace(tmp_path, target)
        return sha, size, key

    async def adopt(self, tmp_path: Path) -> Stored:
        """Move a finished temp file into the store by its content hash."""
        sha = await anyio.to_thread.run_sync(file_sha256, tmp_path)
        return self._place(tmp_path, sha)

    async def write_stream(self, chunks: AsyncIterator[bytes], limit: int, what: str) -> Stored:
        """Stream bytes into the store; refuse past `limit` bytes (nothing is kept)."""
        tmp = self.temp_path()
        return self._place(tmp, await spool(tmp, chunks, limit, what))

    async def local_path(self, key: str) -> Path:
        """The file itself."""
        return self.path(key)

    async def download_url(
        self, sha256: str, key: str, ttl_s: int, task_id: str, lease: str
    ) -> str:
        """A signed link to `/blobs/<sha256>`, valid while the lease lasts (the route checks)."""
        expires = self.clock.now_ms() + ttl_s * 1000
        resource = f"{sha256}:{task_id}:{lease}"
        params = {"task": task_id, "lease": lease}
        return self.signer.sign("GET", f"/blobs/{sha256}", resource, expires, params)

    async def upload_url(self, task_id: str, lease: str, ttl_s: int) -> str:
        """A signed link to `/agent/results/<task>` for this lease."""
        expires = self.clock.now_ms() + ttl_s * 1000
        return self.signer.sign(
            "PUT", f"/agent/results/{task_id}", f"{task_id}:{lease}", expires, {"lease": lease}
        )

    async def receive_upload(
        self, task_id: str, lease: str, sha256: str, limit: int
    ) -> Stored | None:
        """Results come through the coordinator's route and are attached there: nothing here."""
        return None

    async def delete(self, key: str, written_before_ms: int) -> bool:
        """Move the file aside (atomically), and delete it unless it was written meanwhile (then
        it goes back: a writer placing the same content replaces it with identical bytes)."""
        path, aside = self.path(key), self.temp_path(".gone")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            aside.unlink(missing_ok=True)
            return False
        if aside.stat().st_mtime * 1000 >= written_before_ms:
            os.replace(aside, path)
            return False
        aside.unlink()
        return True

    def pinned(self, shas: Iterable[str]) -> AbstractContextManager[None]:
        """Nothing to pin: the files themselves are the store (the sweeper takes only blobs no
        row needs)."""
        return contextlib.nullcontext()

    def free_bytes(self) -> int | None:
        """Free bytes on the store's file system."""
        return shutil.disk_usage(self.root).free

    async def close(self) -> None:
        """Nothing to release."""

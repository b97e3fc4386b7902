"""Content-addressed blob storage on local disk: `blobs/ab/cdef...` named by sha256."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from gridx.coordinator.errors import TooLarge

CHUNK = 1 << 20


class LocalStorage:
    """Blobs as files under one root. Writes go to a temp file first, then an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def key_for(self, sha256: str) -> str:
        """The storage key of a blob (a relative path derived only from its hash)."""
        return f"{sha256[:2]}/{sha256}"

    def path(self, key: str) -> Path:
        """The file behind a storage key."""
        return self.root / key

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh path in the store's temp folder (same file system, so renames are atomic)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def adopt(self, tmp_path: Path) -> tuple[str, int, str]:
        """Move a finished temp file into the store by its content hash.

        Returns:
            (sha256, size, storage key).
        """
        digest = hashlib.sha256()
        with tmp_path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        sha = digest.hexdigest()
        key = self.key_for(sha)
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = tmp_path.stat().st_size
        os.replace(tmp_path, target)
        return sha, size, key

    async def write_stream(
        self, chunks: AsyncIterator[bytes], limit: int, what: str
    ) -> tuple[str, int, str]:
        """Stream bytes into the store, hashing as they arrive; refuse past `limit` bytes.

        Raises:
            TooLarge: the stream exceeded `limit` (nothing is kept).
        """
        tmp = self.temp_path()
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
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        sha = digest.hexdigest()
        key = self.key_for(sha)
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
        return sha, size, key

"""A replica's local copies of blobs kept in a remote store (S3, Supabase Storage).

The coordinator reads a remote blob only when it must look inside (validating a result, merging a
round); each copy is verified against its name once, then kept here, least recently used evicted
first, never one a merge has pinned or one being streamed right now.
"""

from __future__ import annotations

import collections
import contextlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path

DEFAULT_CACHE_BYTES = 2 << 30
"""The local copies a replica keeps (GRIDX_S3_CACHE_MB), least recently used evicted first."""
RECENT_USE_S = 60
"""A copy used this recently (a download being streamed) is not evicted."""

Fetch = Callable[[str, Path], Awaitable[str]]
"""Copies a remote object into a local file; returns the sha256 of the bytes written."""


class BlobCache:
    """Verified copies of blobs under `root/ab/<sha256>`, plus a spool folder `root/tmp`."""

    def __init__(self, root: Path, cap_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.cap = cap_bytes
        self._pins: collections.Counter[str] = collections.Counter()
        self._bytes = sum(f.stat().st_size for f in self._files())

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh file in the spool folder."""
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def path(self, sha256: str) -> Path:
        """Where the copy of a blob lives (whether or not it is there)."""
        return self.root / sha256[:2] / sha256

    def keep(self, tmp_path: Path, sha256: str) -> None:
        """Make a verified temp file the copy of `sha256` (the temp file is consumed)."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = tmp_path.stat().st_size
        had = target.stat().st_size if target.exists() else 0
        os.replace(tmp_path, target)
        self._bytes += size - had
        if self._bytes > self.cap:
            self._evict()

    def drop(self, sha256: str) -> None:
        """Forget the copy of a blob deleted from the store."""
        path = self.path(sha256)
        with contextlib.suppress(FileNotFoundError):
            self._bytes -= path.stat().st_size
            path.unlink()

    async def get(self, sha256: str, key: str, fetch: Fetch) -> Path:
        """The copy of `sha256`, fetched from `key` (and its hash checked) on first use."""
        target = self.path(sha256)
        if target.exists():
            os.utime(target)  # used now: the last to be evicted
            return target
        tmp = self.temp_path()
        try:
            if await fetch(key, tmp) != sha256:
                raise RuntimeError(f"object {key} does not hash to its name; the store is damaged")
            self.keep(tmp, sha256)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    @contextlib.contextmanager
    def pinned(self, shas: Iterable[str]) -> Iterator[None]:
        """Keep these copies while the block runs (a merge reads them)."""
        held = [s for s in shas if s]
        self._pins.update(held)
        try:
            yield
        finally:
            self._pins.subtract(held)
            self._pins += collections.Counter()  # drop the zeros

    def _files(self) -> list[Path]:
        return [p for p in self.root.glob("*/*") if p.is_file() and p.parent != self.tmp]

    def _evict(self) -> None:
        """Bring the copies under 90% of the cap, least recently used first; a pinned copy, or
        one used in the last minute, stays."""
        recent = time.time() - RECENT_USE_S
        for path in sorted(self._files(), key=lambda p: p.stat().st_mtime):
            if self._bytes <= self.cap * 0.9:
                break
            stat = path.stat()
            if path.name in self._pins or stat.st_mtime > recent:
                continue
            path.unlink(missing_ok=True)
            self._bytes -= stat.st_size

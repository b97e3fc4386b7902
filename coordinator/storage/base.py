"""The storage contract: content-addressed blobs, signed links for nodes, a local spool folder.

`LocalStorage` (the embedded default) keeps blobs on disk and links to the coordinator's own
routes; `S3Storage` and `SupabaseStorage` (both `RemoteStorage`) keep them in a bucket and hand
nodes the store's own signed links, so their bytes never pass through a coordinator replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

Stored = tuple[str, int, str]
"""(sha256, size, storage key) of a stored blob."""


class Storage(Protocol):
    """Where job inputs, node results and models live."""

    tmp: Path
    """A local folder for spooling (uploads being received, aggregation outputs)."""

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh file in `tmp`."""
        ...

    async def adopt(self, tmp_path: Path) -> Stored:
        """Store a finished temp file under its content hash (the temp file is consumed)."""
        ...

    async def write_stream(self, chunks: AsyncIterator[bytes], limit: int, what: str) -> Stored:
        """Store a byte stream, refusing it past `limit` bytes (`TooLarge`, nothing kept)."""
        ...

    async def local_path(self, key: str) -> Path:
        """A local file holding the blob (S3: a verified cached copy), for reading or serving."""
        ...

    async def download_url(
        self, sha256: str, key: str, ttl_s: int, task_id: str, lease: str
    ) -> str:
        """A link the node holding `lease` on `task_id` GETs the blob from for `ttl_s` seconds
        (local disk: only while that lease lasts; S3: until it expires)."""
        ...

    async def upload_url(self, task_id: str, lease: str, ttl_s: int) -> str:
        """A link the node holding `lease` PUTs the task's result to for `ttl_s` seconds."""
        ...

    async def receive_upload(
        self, task_id: str, lease: str, sha256: str, limit: int
    ) -> Stored | None:
        """Take in a result PUT straight to storage through `upload_url`, checking its size and
        that its bytes hash to `sha256`; None when nothing was put there.

        Raises:
            TooLarge: over `limit` (the object is deleted).
            InvalidInput: the bytes do not hash to `sha256` (the object is deleted).
        """
        ...

    async def delete(self, key: str, written_before_ms: int) -> bool:
        """Delete a blob's file unless it was written at or after `written_before_ms` (someone
        is storing the same content again right now); whether it was deleted."""
        ...

    def pinned(self, shas: Iterable[str]) -> AbstractContextManager[None]:
        """Keep these blobs' local copies while the block runs (a merge reads them)."""
        ...

    def free_bytes(self) -> int | None:
        """Free space where blobs are written (None: not this store's concern, e.g. S3)."""
        ...

    async def close(self) -> None:
        """Release clients."""
        ...


SCHEMES = ("s3", "supabase")
"""The object stores a storage URL may name."""


def parse_storage_url(url: str, schemes: tuple[str, ...] = SCHEMES) -> tuple[str, str, str]:
    """`s3://bucket/some/prefix` -> ("s3", "bucket", "some/prefix/").

    Raises:
        ValueError: not `SCHEME://BUCKET[/PREFIX]` with one of `schemes`.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in schemes:
        names = " or ".join(f"{s}://BUCKET[/PREFIX]" for s in schemes)
        raise ValueError(f"unknown storage URL {url!r}: use {names}")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ValueError(f"storage URL {url!r} names no bucket")
    return scheme, bucket, (prefix.strip("/") + "/") if prefix.strip("/") else ""

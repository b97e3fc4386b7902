"""Blobs in an S3-compatible bucket (AWS S3, Supabase Storage's S3 endpoint, MinIO, SeaweedFS).

Keys: `<prefix>blobs/ab/<sha256>` for content-addressed blobs, `<prefix>incoming/<task>/<lease>`
for a result a node PUT through a presigned URL and the coordinator has not verified yet. Nodes
move bytes straight to and from the bucket; the coordinator reads a blob only when it must look
inside (validating a result, merging a round), through a local cache of verified copies.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.coordinator.storage.base import Stored, parse_storage_url
from gridx.coordinator.storage.cache import DEFAULT_CACHE_BYTES, BlobCache
from gridx.coordinator.storage.local import CHUNK, file_sha256, spool

MULTIPART_THRESHOLD = 64 << 20
"""Files above this go up in parts of this size (S3's smallest part is 5 MiB)."""


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class S3Storage:
    """The storage contract over one bucket, with presigned URLs for nodes."""

    def __init__(
        self,
        client: Any,
        stack: AsyncExitStack,
        bucket: str,
        prefix: str,
        cache: Path,
        part_size: int = MULTIPART_THRESHOLD,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.client = client
        self._stack = stack
        self.bucket = bucket
        self.prefix = prefix
        self.copies = BlobCache(cache, cache_bytes)
        self.tmp = self.copies.tmp
        self.part_size = part_size

    @classmethod
    async def open(
        cls,
        url: str,
        cache: Path,
        *,
        endpoint: str = "",
        region: str = "us-east-1",
        part_size: int = MULTIPART_THRESHOLD,
        create_bucket: bool = True,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        keys: tuple[str, str] | None = None,
    ) -> S3Storage:
        """Connect with `keys` (access key id, secret), else the usual `AWS_*` variables; create
        the bucket if missing."""
        _, bucket, prefix = parse_storage_url(url, ("s3",))
        stack = AsyncExitStack()
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 5, "mode": "standard"},
        )
        client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=endpoint or None,
                region_name=region,
                config=config,
                aws_access_key_id=keys[0] if keys else None,
                aws_secret_access_key=keys[1] if keys else None,
            )
        )
        store = cls(client, stack, bucket, prefix, cache, part_size, cache_bytes)
        if create_bucket:
            await store.ensure_bucket()
        return store

    async def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""
        try:
            await self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if not _missing(exc):
                raise
            with contextlib.suppress(self.client.exceptions.BucketAlreadyOwnedByYou):
                await self.client.create_bucket(Bucket=self.bucket)

    async def close(self) -> None:
        """Close the client."""
        await self._stack.aclose()

    def blob_key(self, sha256: str) -> str:
        """Where a blob lives in the bucket."""
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256}"

    def incoming_key(self, task_id: str, lease: str) -> str:
        """Where the node holding `lease` puts the task's result."""
        return f"{self.prefix}incoming/{task_id}/{lease}"

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh file in the spool folder."""
        return self.copies.temp_path(suffix)

    async def _exists(self, key: str) -> int | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def delete(self, key: str, written_before_ms: int) -> bool:
        """Delete the object (and the cached copy) unless it was written at or after
        `written_before_ms`."""
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return False
            raise
        if head["LastModified"].timestamp() * 1000 >= written_before_ms:
            return False
        await self.client.delete_object(Bucket=self.bucket, Key=key)
        self.copies.drop(key.rsplit("/", 1)[-1])
        return True

    async def _touch(self, key: str) -> None:
        """Renew an object's LastModified (a server-side copy onto itself): it is being
        stored again, so the sweeper must not take it now."""
        await self.client.copy_object(
            Bucket=self.bucket,
            Key=key,
            CopySource={"Bucket": self.bucket, "Key": key},
            MetadataDirective="REPLACE",
        )

    def free_bytes(self) -> int | None:
        """The bucket's space is the S3 server's business."""
        return None

    async def _put_file(self, path: Path, key: str) -> None:
        size = path.stat().st_size
        if size <= self.part_size:
            data = await anyio.to_thread.run_sync(path.read_bytes)
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
            return
        upload = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        upload_id = upload["UploadId"]
        parts = []
        try:
            with path.open("rb") as fh:
                number = 1
                while chunk := await anyio.to_thread.run_sync(fh.read, self.part_size):
                    part = await self.client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        PartNumber=number,
                        UploadId=upload_id,
                        Body=chunk,
                    )
                    parts.append({"ETag": part["ETag"], "PartNumber": number})
                    number += 1
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            raise

    def pinned(self, shas: Iterable[str]) -> AbstractContextManager[None]:
        """Keep these blobs' cached copies while the block runs (a merge reads them)."""
        return self.copies.pinned(shas)

    async def adopt(self, tmp_path: Path) -> Stored:
        """Upload a finished temp file under its hash (once), keeping it as the cached copy."""
        sha = await anyio.to_thread.run_sync(file_sha256, tmp_path)
        size = tmp_path.stat().st_size
        key = self.blob_key(sha)
        if await self._exists(key) != size:
            await self._put_file(tmp_path, key)
        else:
            await self._touch(key)
        self.copies.keep(tmp_path, sha)
        return sha, size, key

    async def write_stream(self, chunks: AsyncIterator[bytes], limit: int, what: str) -> Stored:
        """Spool a stream locally (refusing it past `limit`), then upload it."""
        tmp = self.temp_path()
        await spool(tmp, chunks, limit, what)
        return await self.adopt(tmp)

    async def _download(self, key: str, dest: Path, limit: int | None = None) -> tuple[str, int]:
        obj = await self.client.get_object(Bucket=self.bucket, Key=key)
        digest = hashlib.sha256()
        size = 0
        async with obj["Body"] as body, await anyio.open_file(dest, "wb") as fh:
            while chunk := await body.read(CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise TooLarge(f"the result file is larger than the limit of {limit} bytes")
                digest.update(chunk)
                await fh.write(chunk)
        return digest.hexdigest(), size

    async def local_path(self, key: str) -> Path:
        """The cached copy, fetched (and its hash checked against its key) on first use."""

        async def fetch(key: str, dest: Path) -> str:
            return (await self._download(key, dest))[0]

        return await self.copies.get(key.rsplit("/", 1)[-1], key, fetch)

    async def _presign(self, method: str, key: str, ttl_s: int) -> str:
        url: str = await self.client.generate_presigned_url(
            method, Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=max(1, ttl_s)
        )
        return url

    async def download_url(
        self, sha256: str, key: str, ttl_s: int, task_id: str, lease: str
    ) -> str:
        """A presigned GET of the blob (S3 checks only its expiry, not the lease)."""
        return await self._presign("get_object", key, ttl_s)

    async def upload_url(self, task_id: str, lease: str, ttl_s: int) -> str:
        """A presigned PUT to this lease's incoming key."""
        return await self._presign("put_object", self.incoming_key(task_id, lease), ttl_s)

    async def receive_upload(
        self, task_id: str, lease: str, sha256: str, limit: int
    ) -> Stored | None:
        """Verify an incoming result (size, sha256), then file it under its hash."""
        incoming = self.incoming_key(task_id, lease)
        size = await self._exists(incoming)
        if size is None:
            return None
        tmp = self.temp_path()
        try:
            if size > limit:
                raise TooLarge(f"the result file is larger than the limit of {limit} bytes")
            got, size = await self._download(incoming, tmp, limit)
            if got != sha256:
                raise InvalidInput(
                    "the uploaded result does not hash to result_sha256; upload it again"
                )
            key = self.blob_key(got)
            if await self._exists(key) != size:
                await self.client.copy_object(
                    Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": incoming}
                )
            else:
                await self._touch(key)
            self.copies.keep(tmp, got)
        except (TooLarge, InvalidInput):
            await self.client.delete_object(Bucket=self.bucket, Key=incoming)
            raise
        finally:
            tmp.unlink(missing_ok=True)
        await self.client.delete_object(Bucket=self.bucket, Key=incoming)
        return got, size, key

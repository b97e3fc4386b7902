"""Blobs in an S3-compatible bucket (AWS S3, Supabase Storage's S3 endpoint, MinIO, SeaweedFS).

Nodes move bytes straight to and from the bucket through presigned URLs; the coordinator reads a
blob only when it must look inside (validating a result, merging a round), through a local cache
of verified copies (`remote.py`: keys, the cache, receipt).
"""

from __future__ import annotations

import contextlib
import hashlib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from gridx.coordinator.errors import TooLarge
from gridx.coordinator.storage.base import parse_storage_url
from gridx.coordinator.storage.cache import DEFAULT_CACHE_BYTES
from gridx.coordinator.storage.local import CHUNK
from gridx.coordinator.storage.remote import RemoteStorage

MULTIPART_THRESHOLD = 64 << 20
"""Files above this go up in parts of this size (S3's smallest part is 5 MiB)."""


def _missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


class S3Storage(RemoteStorage):
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
        super().__init__(prefix, cache, cache_bytes)
        self.bucket = bucket
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

    async def _stat(self, key: str) -> tuple[int, int] | None:
        try:
            head = await self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"]), int(head["LastModified"].timestamp() * 1000)

    async def _remove(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.bucket, Key=key)

    async def _copy(self, source: str, dest: str) -> None:
        await self.client.copy_object(
            Bucket=self.bucket,
            Key=dest,
            CopySource={"Bucket": self.bucket, "Key": source},
            # S3 copies an object onto itself only to change it: here, its last-written time
            **({"MetadataDirective": "REPLACE"} if source == dest else {}),
        )

    async def _put(self, path: Path, key: str) -> None:
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

"""Blobs in a Supabase Storage bucket, through the `supabase` package's storage client (storage3)
with the project's service-role key.

Keys as in `s3.py`: `<prefix>blobs/ab/<sha256>` and `<prefix>incoming/<task>/<lease>`. Nodes
download through `create_signed_url` links and upload through `create_signed_upload_url` links,
so their bytes go to Supabase directly, never through a coordinator replica. The bucket is made
private when missing and refused when public (its blobs are users' data and models). Files past
the standard upload's size go up resumably (`tus.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError
from storage3.types import CreateSignedUploadUrlOptions

from gridx.coordinator.errors import InvalidInput, TooLarge
from gridx.coordinator.storage import tus
from gridx.coordinator.storage.base import Stored, parse_storage_url
from gridx.coordinator.storage.cache import DEFAULT_CACHE_BYTES, BlobCache
from gridx.coordinator.storage.local import CHUNK, file_sha256, spool

STANDARD_MAX = tus.CHUNK
"""Files above this go up resumably (Supabase's advice past 6 MB; its standard upload refuses
files past the project's standard limit)."""


def storage_api_url(project_url: str, storage_url: str = "") -> str:
    """The Storage API's base URL: `storage_url` when given (a Storage server of one's own),
    else the project's `/storage/v1` (every Supabase project's gateway path)."""
    return (storage_url or project_url.rstrip("/") + "/storage/v1").rstrip("/")


def _status(exc: StorageApiError) -> str:
    return str(exc.status)


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


class SupabaseStorage:
    """The storage contract over one Supabase Storage bucket."""

    def __init__(
        self,
        client: AsyncStorageClient,
        http: httpx.AsyncClient,
        api: str,
        bucket: str,
        prefix: str,
        cache: Path,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        standard_max: int = STANDARD_MAX,
    ) -> None:
        self.client = client
        self.http = http
        self.api = api
        self.bucket = bucket
        self.prefix = prefix
        self.files = client.from_(bucket)
        self.copies = BlobCache(cache, cache_bytes)
        self.tmp = self.copies.tmp
        self.standard_max = standard_max

    @classmethod
    async def open(
        cls,
        url: str,
        cache: Path,
        *,
        api: str,
        service_key: str,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        standard_max: int = STANDARD_MAX,
    ) -> SupabaseStorage:
        """Connect to the Storage API at `api` with the service-role key; create the bucket
        (private) if missing.

        Raises:
            RuntimeError: the server refused the key, or the bucket is public.
        """
        _, bucket, prefix = parse_storage_url(url, ("supabase",))
        headers = {"apikey": service_key, "Authorization": f"Bearer {service_key}"}
        http = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(120, connect=15), follow_redirects=True
        )
        client = AsyncStorageClient(api + "/", headers, http_client=http)
        store = cls(client, http, api, bucket, prefix, cache, cache_bytes, standard_max)
        try:
            await store.ensure_bucket()
        except BaseException:
            await http.aclose()
            raise
        return store

    async def ensure_bucket(self) -> None:
        """Create the bucket (private) unless it exists; refuse a public one.

        Raises:
            RuntimeError: the key is not the project's service_role key, or the bucket is
                public.
        """
        try:
            found = await self.client.get_bucket(self.bucket)
        except StorageApiError as exc:
            if _status(exc) not in ("400", "404"):
                raise self._refused_key(exc) from exc
            try:
                await self.client.create_bucket(self.bucket, options={"public": False})
            except StorageApiError as again:
                if _status(again) in ("401", "403"):  # e.g. the anon key: row-level security
                    raise self._refused_key(again) from again
                await self.client.get_bucket(self.bucket)  # another replica made it first
            return
        if found.public:
            raise RuntimeError(
                f"the Supabase bucket {self.bucket!r} is public: anyone could read the jobs' "
                "data and models; make it private or name another bucket"
            )

    def _refused_key(self, exc: StorageApiError) -> RuntimeError:
        return RuntimeError(
            f"Supabase Storage at {self.api} refused the key ({exc.message}): set "
            "SUPABASE_SERVICE_ROLE_KEY to the project's service_role key (dashboard: Project "
            "Settings > API keys)"
        )

    async def close(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    def blob_key(self, sha256: str) -> str:
        """Where a blob lives in the bucket."""
        return f"{self.prefix}blobs/{sha256[:2]}/{sha256}"

    def incoming_key(self, task_id: str, lease: str) -> str:
        """Where the node holding `lease` puts the task's result."""
        return f"{self.prefix}incoming/{task_id}/{lease}"

    def temp_path(self, suffix: str = "") -> Path:
        """A fresh file in the spool folder."""
        return self.copies.temp_path(suffix)

    def _object_url(self, key: str) -> str:
        return f"{self.api}/object/{quote(self.bucket)}/{quote(key)}"

    async def _info(self, key: str) -> tuple[int, int] | None:
        """(size, last written in ms) of an object; None when there is none."""
        try:
            info: dict[str, Any] = await self.files.info(key)
        except StorageApiError as exc:
            if _status(exc) == "404" or (_status(exc) == "400" and "not found" in exc.message):
                return None
            raise
        return int(info["size"]), _ms(info.get("last_modified") or info["updated_at"])

    async def _copy(self, source: str, dest: str) -> None:
        """Server-side copy, replacing `dest`; onto itself it renews the last-written time (the
        sweeper must not take a blob being stored again)."""
        resp = await self.http.post(
            f"{self.api}/object/copy",
            json={"bucketId": self.bucket, "sourceKey": source, "destinationKey": dest},
            headers={"x-upsert": "true"},
        )
        if resp.status_code != 200:
            raise tus.refused(f"copying {source}", resp)

    async def _put_file(self, path: Path, key: str) -> None:
        if path.stat().st_size <= self.standard_max:
            await self.files.upload(
                key, path, {"upsert": "true", "content-type": "application/octet-stream"}
            )
            return
        await tus.upload(self.http, f"{self.api}/upload/resumable", path, self.bucket, key)

    async def delete(self, key: str, written_before_ms: int) -> bool:
        """Delete the object (and the cached copy) unless it was written at or after
        `written_before_ms`."""
        info = await self._info(key)
        if info is None or info[1] >= written_before_ms:
            return False
        await self.files.remove([key])
        self.copies.drop(key.rsplit("/", 1)[-1])
        return True

    def free_bytes(self) -> int | None:
        """The bucket's space is Supabase's business."""
        return None

    def pinned(self, shas: Iterable[str]) -> AbstractContextManager[None]:
        """Keep these blobs' cached copies while the block runs (a merge reads them)."""
        return self.copies.pinned(shas)

    async def adopt(self, tmp_path: Path) -> Stored:
        """Upload a finished temp file under its hash (once), keeping it as the cached copy."""
        sha = await anyio.to_thread.run_sync(file_sha256, tmp_path)
        size = tmp_path.stat().st_size
        key = self.blob_key(sha)
        info = await self._info(key)
        if info is not None and info[0] == size:
            await self._copy(key, key)
        else:
            await self._put_file(tmp_path, key)
        self.copies.keep(tmp_path, sha)
        return sha, size, key

    async def write_stream(self, chunks: AsyncIterator[bytes], limit: int, what: str) -> Stored:
        """Spool a stream locally (refusing it past `limit`), then upload it."""
        tmp = self.temp_path()
        await spool(tmp, chunks, limit, what)
        return await self.adopt(tmp)

    async def _download(self, key: str, dest: Path, limit: int | None = None) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        async with (
            self.http.stream("GET", self._object_url(key)) as resp,
            await anyio.open_file(dest, "wb") as fh,
        ):
            if resp.status_code != 200:
                await resp.aread()
                raise tus.refused(f"reading {key}", resp)
            async for chunk in resp.aiter_bytes(CHUNK):
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

    async def download_url(
        self, sha256: str, key: str, ttl_s: int, task_id: str, lease: str
    ) -> str:
        """A signed GET of the blob (Supabase checks only its expiry, not the lease)."""
        signed = await self.files.create_signed_url(key, max(1, ttl_s))
        return str(signed["signedURL"])

    async def upload_url(self, task_id: str, lease: str, ttl_s: int) -> str:
        """A signed upload to this lease's incoming key (a retried PUT replaces the first; the
        link's lifetime is the project's, two hours on Supabase's platform)."""
        signed = await self.files.create_signed_upload_url(
            self.incoming_key(task_id, lease), CreateSignedUploadUrlOptions(upsert="true")
        )
        return str(signed["signed_url"])

    async def receive_upload(
        self, task_id: str, lease: str, sha256: str, limit: int
    ) -> Stored | None:
        """Verify an incoming result (size, sha256), then file it under its hash."""
        incoming = self.incoming_key(task_id, lease)
        info = await self._info(incoming)
        if info is None:
            return None
        tmp = self.temp_path()
        try:
            if info[0] > limit:
                raise TooLarge(f"the result file is larger than the limit of {limit} bytes")
            got, size = await self._download(incoming, tmp, limit)
            if got != sha256:
                raise InvalidInput(
                    "the uploaded result does not hash to result_sha256; upload it again"
                )
            key = self.blob_key(got)
            await self._copy(incoming, key)
            self.copies.keep(tmp, got)
        finally:
            tmp.unlink(missing_ok=True)
            await self.files.remove([incoming])
        return got, size, key

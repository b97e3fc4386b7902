"""Blobs in a Supabase Storage bucket, through the `supabase` package's storage client (storage3)
with the project's service-role key.

Keys, the cache of copies and the receipt of results as every remote store (`remote.py`). Nodes
download through `create_signed_url` links and upload through `create_signed_upload_url` links,
so their bytes go to Supabase directly, never through a coordinator replica. The bucket is made
private when missing and refused when public (its blobs are users' data and models). Files past
the standard upload's size go up resumably (`tus.py`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from storage3 import AsyncStorageClient
from storage3.exceptions import StorageApiError
from storage3.types import CreateSignedUploadUrlOptions

from gridx.coordinator.errors import TooLarge
from gridx.coordinator.storage import tus
from gridx.coordinator.storage.base import parse_storage_url
from gridx.coordinator.storage.cache import DEFAULT_CACHE_BYTES
from gridx.coordinator.storage.local import CHUNK
from gridx.coordinator.storage.remote import RemoteStorage

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


class SupabaseStorage(RemoteStorage):
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
        super().__init__(prefix, cache, cache_bytes)
        self.client = client
        self.http = http
        self.api = api
        self.bucket = bucket
        self.files = client.from_(bucket)
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

    def _object_url(self, key: str) -> str:
        return f"{self.api}/object/{quote(self.bucket)}/{quote(key)}"

    async def _stat(self, key: str) -> tuple[int, int] | None:
        try:
            info: dict[str, Any] = await self.files.info(key)
        except StorageApiError as exc:
            if _status(exc) == "404" or (_status(exc) == "400" and "not found" in exc.message):
                return None
            raise
        return int(info["size"]), _ms(info.get("last_modified") or info["updated_at"])

    async def _copy(self, source: str, dest: str) -> None:
        resp = await self.http.post(
            f"{self.api}/object/copy",
            json={"bucketId": self.bucket, "sourceKey": source, "destinationKey": dest},
            headers={"x-upsert": "true"},
        )
        if resp.status_code != 200:
            raise tus.refused(f"copying {source}", resp)

    async def _remove(self, key: str) -> None:
        await self.files.remove([key])

    async def _put(self, path: Path, key: str) -> None:
        if path.stat().st_size <= self.standard_max:
            await self.files.upload(
                key, path, {"upsert": "true", "content-type": "application/octet-stream"}
            )
            return
        await tus.upload(self.http, f"{self.api}/upload/resumable", path, self.bucket, key)

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

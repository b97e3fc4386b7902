"""Object storage for blobs (job files, results, models): one contract (`base.Storage`), with
local disk (embedded default) and S3-compatible engines."""

from __future__ import annotations

from gridx.coordinator.clock import Clock
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.base import Storage
from gridx.coordinator.storage.signing import UrlSigner


async def open_storage(settings: Settings, signer: UrlSigner, clock: Clock) -> Storage:
    """The store `settings.storage_url` names: an S3 bucket, else local disk in `data_dir`."""
    if not settings.storage_url:
        from gridx.coordinator.storage.local import LocalStorage

        return LocalStorage(settings.blob_dir, signer, clock)
    from gridx.coordinator.storage.s3 import S3Storage

    return await S3Storage.open(
        settings.storage_url,
        settings.data_dir / "s3-cache",
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        cache_bytes=settings.s3_cache_mb << 20,
    )

"""Object storage for blobs (job files, results, models): one contract (`base.Storage`), with
local disk (embedded default), S3-compatible and Supabase Storage engines."""

from __future__ import annotations

from gridx.coordinator.clock import Clock
from gridx.coordinator.settings import Settings
from gridx.coordinator.storage.base import Storage, parse_storage_url
from gridx.coordinator.storage.signing import UrlSigner
from gridx.schemas.envconfig import ConfigError


def check(settings: Settings) -> None:
    """Refuse storage settings that cannot work, before anything starts.

    Raises:
        ConfigError: the storage URL is malformed, or `supabase://` lacks its URL or key.
    """
    if not settings.storage_url:
        return
    try:
        scheme, _, _ = parse_storage_url(settings.storage_url)
    except ValueError as exc:
        raise ConfigError(f"GRIDX_STORAGE_URL: {exc}") from exc
    if scheme != "supabase":
        return
    missing = [
        name
        for name, value in (
            ("SUPABASE_URL", settings.supabase_url or settings.supabase_storage_url),
            ("SUPABASE_SERVICE_ROLE_KEY", settings.supabase_service_role_key),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"GRIDX_STORAGE_URL={settings.storage_url} needs {' and '.join(missing)} (the "
            "project's URL and service_role key: Supabase dashboard, Project Settings > API keys)"
        )
    try:
        import storage3  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "supabase:// storage needs the supabase package: pip install 'gridx[supabase]'"
        ) from exc


async def open_storage(settings: Settings, signer: UrlSigner, clock: Clock) -> Storage:
    """The store `settings.storage_url` names: an S3 or Supabase bucket, else local disk in
    `data_dir`."""
    check(settings)
    if not settings.storage_url:
        from gridx.coordinator.storage.local import LocalStorage

        return LocalStorage(settings.blob_dir, signer, clock)
    cache, cache_bytes = settings.data_dir / "s3-cache", settings.s3_cache_mb << 20
    if settings.storage_url.startswith("supabase://"):
        from gridx.coordinator.storage.supabase import SupabaseStorage, storage_api_url

        return await SupabaseStorage.open(
            settings.storage_url,
            cache,
            api=storage_api_url(settings.supabase_url, settings.supabase_storage_url),
            service_key=settings.supabase_service_role_key,
            cache_bytes=cache_bytes,
        )
    from gridx.coordinator.storage.s3 import S3Storage

    return await S3Storage.open(
        settings.storage_url,
        cache,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        cache_bytes=cache_bytes,
    )

"""`gridx coordinator backup`: a consistent copy of an embedded coordinator (SQLite + local
blobs) taken while it runs. The database is copied with SQLite's online backup (one consistent
snapshot), then every blob it may name; restoring is starting a coordinator on the copy. A
PostgreSQL + S3 deployment is backed up with `pg_dump` and a bucket copy (README)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import click

from gridx.coordinator.settings import Settings


def backup(settings: Settings, out: Path) -> dict[str, int]:
    """Copy the database (online), the signing key and the blobs into `out` (a new folder).

    Raises:
        click.UsageError: not an embedded coordinator, no database there, or `out` exists.
    """
    if settings.database_url or settings.storage_url:
        raise click.UsageError(
            "this coordinator uses PostgreSQL / S3: back it up with `pg_dump` and a copy of the "
            "bucket (see the README's Operations section)"
        )
    if not settings.db_path.exists():
        raise click.UsageError(f"no coordinator database at {settings.db_path}: pass --data-dir")
    if out.exists():
        raise click.UsageError(f"{out} exists: name a new folder for the backup")
    out.mkdir(parents=True)
    source = sqlite3.connect(settings.db_path)
    target = sqlite3.connect(out / settings.db_path.name)
    try:
        source.backup(target)  # a consistent snapshot, while writers go on
    finally:
        target.close()
        source.close()
    key = settings.data_dir / "signing.key"
    if key.exists():
        shutil.copy2(key, out / key.name)
    blobs = files = 0
    for path in settings.blob_dir.rglob("*"):
        if path.is_file() and path.parent.name != "tmp":
            dest = out / "blobs" / path.relative_to(settings.blob_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
            files, blobs = files + 1, blobs + path.stat().st_size
    return {
        "blobs": files,
        "blob_bytes": blobs,
        "database_bytes": (out / "gridx.db").stat().st_size,
    }

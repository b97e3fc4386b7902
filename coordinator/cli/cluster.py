"""A whole Grid-X on this machine: a real coordinator process and real node processes.

Used by `gridx demo`, the integration tests and the benchmarks, so each exercises the same
processes a deployment runs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
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


def make_user(data_dir: Path, email: str, admin: bool = False) -> str:
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
    out = subprocess.run(cmd + (["--admin"] if admin else []), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"could not create {email}: {out.stderr.strip()}")
    return str(json.loads(out.stdout)["api_key"])


class LocalCluster:
    """Starts and stops a coordinator and nodes under `root` (logs land there too)."""

    def __init__(
        self,
        root: Path,
        coordinator_env: dict[str, str] | None = None,
        executor: str = "process",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate, key, CA) to serve HTTPS, nodes and clients trusting that CA."""
        self.root = root
        self.data_dir = root / "coordinator"
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.verify: str | bool = str(tls[2]) if tls else True
        self.coordinator_env = coordinator_env or {}
        self.coordinator: subprocess.Popen[bytes] | None = None
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
            self.api_key = make_user(self.data_dir, email, admin=True)
        self.start_coordinator()

    def start_coordinator(self) -> None:
        """(Re)start the coordinator process on the same port and data dir."""
        log = (self.root / "coordinator.log").open("ab")
        self.coordinator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridx.coordinator.cli",
                "coordinator",
                "start",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *(
                    ("--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1]))
                    if self.tls
                    else ()
                ),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(self.coordinator_env),
        )
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Block until `/healthz` answers.

        Raises:
            RuntimeError: the coordinator died or never answered (its log is quoted).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.coordinator is not None and self.coordinator.poll() is not None:
                break
            try:
                if (
                    httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        log = (self.root / "coordinator.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the coordinator did not start; its log ends with:\n{log}")

    def add_node(
        self, name: str, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> subprocess.Popen[bytes]:
        """Start a `gridx-node` process with its own state folder (kept across restarts)."""
        log = (self.root / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridx.node",
                "start",
                "--coordinator",
                self.url,
                "--enrolment-key",
                self.api_key,
                "--name",
                name,
                "--state-dir",
                str(self.root / name),
                *(() if "--executor" in args else ("--executor", self.executor)),
                *(() if "--status-port" in args else ("--status-port", "0")),
                *(("--ca-file", str(self.tls[2])) if self.tls and "--ca-file" not in args else ()),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(extra_env or {}),
        )
        self.nodes[name] = proc
        return proc

    def kill_node(self, name: str) -> None:
        """SIGKILL a node (no goodbye: its lease must expire)."""
        proc = self.nodes.pop(name)
        proc.kill()
        proc.wait()

    def kill_coordinator(self) -> None:
        """SIGKILL the coordinator."""
        if self.coordinator is not None:
            self.coordinator.kill()
            self.coordinator.wait()
            self.coordinator = None

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
        if self.coordinator is not None and self.coordinator.poll() is None:
            self.coordinator.send_signal(signal.SIGTERM)
            try:
                self.coordinator.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.coordinator.kill()
                self.coordinator.wait()
        self.coordinator = None

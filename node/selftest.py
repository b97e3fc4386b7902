"""The sandbox self-test: at start-up the node runs a hostile probe through its own executor and
advertises the isolation level it really measured, never the one it hopes for.

Each probe names a promise to the volunteer; `strong` means every one held, `weak` that the
network was at least closed, `none` that not even that. A node below `strong` refuses to work
unless its owner passes `--allow-weak-sandbox`; jobs can ask for a minimum level.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from gridx.node.executors.base import Executor, RunSpec

PROBES = (
    "network",  # no socket to the host's loopback, also after setns into the node's namespace
    "node_state",  # the node's state folder (its token) cannot be read
    "host_files",  # /etc/shadow, /root, /home, root's 0600 files cannot be read
    "write_outside",  # nothing outside the work folder can be written
    "unprivileged",  # the task's files belong to an unprivileged host uid, never root
    "processes",  # a fork bomb stops at 256 processes
    "daemon",  # a double-forked daemon dies with its task
    "memory",  # an allocation past the cap fails
)
SHARED_TMP = ("/tmp", "/var/tmp", "/dev/shm")

_PROBE = textwrap.dedent("""
    import ctypes, json, os, socket, sys, time
    port, canary, outside, targets = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[5:]
    held = {}

    def blocked():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return False
        except OSError:
            return True

    ok = blocked()
    libc = ctypes.CDLL(None, use_errno=True)
    for target in ("/proc/1/ns/net", f"/proc/{os.getppid()}/ns/net"):
        try:
            fd = os.open(target, os.O_RDONLY)
            libc.setns(fd, 0)
            os.close(fd)
        except OSError:
            pass
        ok = ok and blocked()
    held["network"] = ok

    def unreadable(path):
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                open(path, "rb").read(1)
            return False
        except OSError:
            return True

    def unlisted(folder, name):
        try:
            return name not in os.listdir(folder)
        except OSError:
            return True

    held["node_state"] = unreadable(canary) and unlisted(os.path.dirname(canary), "canary")
    held["host_files"] = all(unreadable(p) for p in ("/etc/shadow", "/etc/gshadow", outside))

    for path in targets:  # host paths: the node checks afterwards that none was written
        try:
            with open(path, "w") as fh:
                fh.write("x")
        except OSError:
            pass
    open("owner", "w").write("x")

    r, w = os.pipe()
    children = 0
    for _ in range(400):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        children += 1
    os.close(w)
    for _ in range(children):
        os.wait()
    held["processes"] = children < 256

    def fork():
        # the cap counts every process of this uid on the host: another node's self-test there
        # may hold it for a moment with its own fork bomb
        for _ in range(100):
            try:
                return os.fork()
            except BlockingIOError:
                time.sleep(0.1)
        return os.fork()

    pid = fork()
    if pid == 0:
        os.setsid()
        if fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            for _ in range(200):
                try:
                    open("daemon", "w").write(str(time.monotonic()))
                except OSError:
                    break
                time.sleep(0.05)
        os._exit(0)
    os.waitpid(pid, 0)

    pid = fork()
    if pid == 0:
        try:
            bytearray(int(sys.argv[4]) << 20)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    held["memory"] = status != 0
    json.dump({k: float(v) for k, v in held.items()}, open("metrics.json", "w"))
    open("model.pth", "w").write("probe")
""")


@dataclass
class SandboxReport:
    """What the self-test measured."""

    isolation: str
    held: dict[str, bool] = field(default_factory=dict)
    error: str = ""
    """Why the probe could not run at all (the sandbox cannot start the interpreter)."""

    @property
    def gaps(self) -> list[str]:
        """The probes that did not hold."""
        return [p for p in PROBES if not self.held.get(p, False)]

    @property
    def level(self) -> str:
        """`strong`, `weak` or `none`."""
        if self.error or not self.held.get("network"):
            return "none"
        return "strong" if not self.gaps else "weak"


async def run_selftest(executor: Executor, state_dir: Path, runtime: str) -> SandboxReport:
    """Run the probe through `executor` and check what it left on the host."""
    root = state_dir / "selftest"
    shutil.rmtree(root, ignore_errors=True)
    workdir, logdir = root / "work", root / "logs"
    workdir.mkdir(parents=True)
    canary = state_dir / "canary"
    canary.write_text(secrets.token_hex(16))
    os.chmod(canary, 0o600)
    outside = state_dir / f"selftest-secret-{secrets.token_hex(4)}"  # the owner's 0600 file
    (workdir / "train.py").write_text(_PROBE)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    memory_mb = 256
    nonce = f"gridx-selftest-{secrets.token_hex(4)}"
    targets = [Path(d, nonce) for d in SHARED_TMP if os.path.isdir(d)]
    targets += [root / "escaped", canary.with_suffix(".w"), outside, Path("/etc", nonce)]
    try:
        outside.write_text("secret")
        os.chmod(outside, 0o600)
        spec = RunSpec(
            workdir=workdir,
            logdir=logdir,
            runtime=runtime,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8"},
            timeout_s=60,
            memory_mb=memory_mb,
            max_output_bytes=1 << 20,
            argv=[str(port), str(canary), str(outside), str(memory_mb * 2), *map(str, targets)],
        )
        result = await executor.run(spec, asyncio.Event())
        report = SandboxReport(executor.isolation)
        if not result.ok:
            report.error = f"{result.message}: {result.stderr_tail[-2000:]}"
            return report
        report.held = {k: v == 1.0 for k, v in result.metrics.items() if k in PROBES}
        owner = (workdir / "owner").stat().st_uid
        report.held["unprivileged"] = owner != 0
        beat = workdir / "daemon"
        first = beat.stat().st_mtime_ns if beat.exists() else 0
        await asyncio.sleep(0.3)
        report.held["daemon"] = (beat.stat().st_mtime_ns if beat.exists() else 0) == first
        report.held["write_outside"] = outside.read_text() == "secret" and not any(
            p.exists() for p in targets if p != outside
        )
        return report
    finally:
        listener.close()
        for path in targets:
            path.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)


def explain(report: SandboxReport) -> str:
    """What a node owner reads when the sandbox is weak, and how to fix it."""
    if report.error:
        return (
            f"the {report.isolation} sandbox could not run the probe ({report.error.strip()}). "
            "Install bubblewrap (apt-get install bubblewrap) or Docker, and give the node an "
            "interpreter the task user can read (--python, e.g. a virtualenv outside /root)"
        )
    return (
        f"the {report.isolation} sandbox does not hold: {', '.join(report.gaps)}. Install "
        "bubblewrap (apt-get install bubblewrap) or Docker; or pass --allow-weak-sandbox to "
        "lend this machine anyway, to jobs that accept a weak sandbox"
    )

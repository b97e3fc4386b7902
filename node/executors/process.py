"""The `process` executor: train.py as a sandboxed subprocess (bubblewrap, else unshare, see
`node/sandbox.py`), in a cgroup, under rlimits and a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import resource
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridx.node import cgroups, sandbox
from gridx.node.environments import ensure_env
from gridx.node.executors.base import TAIL_BYTES, RunResult, RunSpec, judge, stopped, wait_or_stop
from gridx.node.state import STATE_MODE

log = logging.getLogger("gridx.node")
LOG_CAP = 8 << 20  # bytes of stdout / stderr kept on the node per run


async def _drain(stream: asyncio.StreamReader, log: Path) -> str:
    """Read a child's output to the end: the first LOG_CAP bytes go to `log`, the last TAIL_BYTES
    come back. A script printing gigabytes fills neither the disk nor the node's memory."""
    written = 0
    tail = bytearray()
    with log.open("wb") as fh:
        while chunk := await stream.read(1 << 16):
            if written < LOG_CAP:
                fh.write(chunk[: LOG_CAP - written])
                written += len(chunk)
            tail += chunk
            if len(tail) > 2 * TAIL_BYTES:
                del tail[:-TAIL_BYTES]
    return bytes(tail[-TAIL_BYTES:]).decode("utf-8", "replace")


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Tells when the process itself has ended: `Process.wait()` also waits for its pipes to
    close, which a daemon it left behind could hold open until the timeout."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=1 << 16, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def _spawn(cmd: list[str], **kwargs: Any) -> tuple[asyncio.subprocess.Process, _Protocol]:
    """`asyncio.create_subprocess_exec` that also hands back its `_Protocol`."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(lambda: _Protocol(loop), *cmd, **kwargs)
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


def _limits(spec: RunSpec, nproc: int, group: cgroups.TaskGroup | None) -> Callable[[], None]:
    """What the child does before exec: join the task's cgroup, set every rlimit."""
    mem = spec.memory_mb << 20
    cpu_s = int(spec.timeout_s * (os.cpu_count() or 1)) + 10
    fsize = spec.max_output_bytes

    def limits() -> None:
        if group is not None:
            group.join()
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return limits


class ProcessExecutor:
    """Runs `python train.py` in the process sandbox (`sandbox.py`), always with limits and a
    timeout: a cgroup (processes, memory, kill) where the node may make one, and rlimits."""

    name = "process"

    def __init__(
        self, state_dir: Path, python: str, node_id: str = "", isolation: str | None = None
    ) -> None:
        self.state_dir = state_dir
        self.python = python
        self.isolation = isolation or sandbox.detect()
        self.user = sandbox.task_user()
        self.cgroups = cgroups.detect(node_id)
        state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(state_dir, STATE_MODE)
        self.etc = sandbox.write_synthetic_etc(state_dir / "sandbox" / "etc")

    async def prepare(self, requirements: Path | None, sha256: str | None) -> str:
        """A virtualenv with the requirements (cached by hash), or the node's interpreter."""
        if requirements is None or sha256 is None:
            return self.python
        return await ensure_env(requirements, sha256, self.state_dir / "envs", self.python)

    def cleanup(self) -> None:
        """Nothing outlives a process run (its PID namespace and cgroup die with it)."""

    def _readonly(self, runtime: str) -> list[Path]:
        """What the task sees read-only: the node's interpreter and the job's environment."""
        paths = list(sandbox.interpreter_paths(self.python))
        if runtime != self.python:
            paths += sandbox.interpreter_paths(runtime)
        return paths

    def _nproc(self) -> int:
        """RLIMIT_NPROC counts every process of the task's real uid on the host: allow the task
        PIDS_MAX on top of those that uid already runs."""
        uid = self.user.uid if self.user.switches else os.getuid()
        running = 0
        for status in glob.glob("/proc/[0-9]*/status"):
            with contextlib.suppress(OSError):
                text = Path(status).read_text()
                if f"\nUid:\t{uid}\t" in text:
                    running += 1
        return running + cgroups.PIDS_MAX

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """Run the script; kill it (its whole process tree) on timeout or when `cancel` is set."""
        spec.logdir.mkdir(parents=True, exist_ok=True)
        if self.user.switches:  # the task's uid writes its model here, and nowhere else
            os.chown(spec.workdir, self.user.uid or 0, self.user.gid or 0)
        cmd = sandbox.wrap(
            [spec.runtime, "-u", spec.script, *spec.argv],
            spec.workdir,
            self.isolation,
            self._readonly(spec.runtime),
            etc=self.etc,
            devices=sorted(glob.glob("/dev/nvidia*")) if spec.gpu else [],
        )
        mem = spec.memory_mb << 20
        group = self.cgroups.create(f"task-{secrets.token_hex(6)}", mem) if self.cgroups else None
        limits = _limits(spec, self._nproc(), group)
        started = time.monotonic()
        try:
            proc, protocol = await _spawn(
                cmd,
                cwd=spec.workdir,
                env=spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=limits,
            )
        except BaseException:
            if group is not None:
                group.kill()
            raise
        assert proc.stdout is not None and proc.stderr is not None
        drains = asyncio.gather(
            _drain(proc.stdout, spec.logdir / "stdout.log"),
            _drain(proc.stderr, spec.logdir / "stderr.log"),
        )

        async def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if group is not None:
                await asyncio.to_thread(group.kill)

        try:
            ended = await wait_or_stop(protocol.exited.wait(), cancel, spec.timeout_s, kill)
        finally:  # whatever the task left running (a daemon) goes with it
            await kill()
        try:  # a descendant that escaped the kill could hold the pipes open
            _, tail = await asyncio.wait_for(drains, 10)
        except TimeoutError:
            tail = "(output streams still open 10 s after the run ended; stopped reading)"
        duration = time.monotonic() - started
        rc = proc.returncode
        if not ended:
            return stopped(spec, cancel, rc, tail, duration)
        return judge(spec, rc, tail, duration)

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
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gridx.node import cgroups, sandbox
from gridx.node.environments import INSTALL_TIMEOUT_S, ensure_env
from gridx.node.executors.base import (
    RunResult,
    RunSpec,
    collect,
    drain,
    judge,
    stopped,
    wait_or_stop,
)
from gridx.node.executors.warm import (
    IDLE_S,
    Runner,
    RunnerGone,
    Runners,
    WarmKey,
    WarmOrCold,
    key_of,
    runner_argv,
)
from gridx.node.memory import MemoryBudget
from gridx.node.state import STATE_MODE
from gridx.node.wheels import PINS_SCRIPT, Progress, quiet

log = logging.getLogger("gridx.node")
WARM_ISOLATION = "bubblewrap"
"""Warm runners need a sandbox with its own /proc, /tmp and PID namespace: between tasks the
runner kills every other process it sees and empties /tmp (see `runner.py`)."""


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


def _chown_tree(folder: Path, uid: int, gid: int) -> None:
    """Give a folder and everything under it (never following links) to uid:gid."""
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), uid, gid)
    os.lchown(folder, uid, gid)


class ProcessExecutor(WarmOrCold):
    """Runs `python train.py` in the process sandbox (`sandbox.py`), always with limits and a
    timeout: a cgroup (processes, memory, kill) where the node may make one, and rlimits. Under
    bubblewrap, a task that may run warm runs in its job's warm runner (`warm.py`)."""

    name = "process"

    def __init__(
        self,
        state_dir: Path,
        python: str,
        node_id: str = "",
        isolation: str | None = None,
        warm_idle_s: float = IDLE_S,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.python = python
        self._frameworks: dict[str, str] | None = None
        self.isolation = isolation or sandbox.detect()
        self.user = sandbox.TaskUser(None, None) if self.isolation == "off" else sandbox.task_user()
        self.cgroups = cgroups.detect(node_id)
        state_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(state_dir, STATE_MODE)
        self.etc = sandbox.write_synthetic_etc(state_dir / "sandbox" / "etc")
        self.runners = Runners(self._start_runner, idle_s=warm_idle_s, budget=budget)

    async def prepare(
        self, requirements: Path | None, sha256: str | None, progress: Progress = quiet
    ) -> str:
        """A virtualenv with the requirements (cached by hash), or the node's interpreter."""
        if requirements is None or sha256 is None:
            return self.python
        envs = self.state_dir / "envs"
        return await ensure_env(requirements, sha256, envs, self.python, self._install, progress)

    async def _install(
        self, command: list[str], folder: Path, readonly: list[Path]
    ) -> tuple[int, str]:
        """Run an environment's installation in the task's sandbox: no network, the task's
        user, only `folder` (the environment being built) writable; killed at the install
        timeout. The folder is the node's again afterwards (tasks see it read-only)."""
        uid, gid = self.user.uid, self.user.gid
        if self.user.switches:
            _chown_tree(folder, uid or 0, gid or 0)
        cmd = sandbox.wrap(
            command,
            folder,
            self.isolation,
            [*sandbox.interpreter_paths(self.python), *readonly],
            etc=self.etc,
        )
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_CACHE_DIR": "1",
            "TMPDIR": "/tmp",
        }
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                cwd=folder,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), INSTALL_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
                return -1, "timed out"
        finally:
            if self.user.switches:
                _chown_tree(folder, os.getuid(), os.getgid())
        return proc.returncode or 0, out.decode("utf-8", "replace")[-8192:]

    def frameworks(self) -> dict[str, str]:
        """The pinned frameworks of the interpreter tasks run with (asked once)."""
        if self._frameworks is None:
            try:
                out = subprocess.run(
                    [self.python, "-c", PINS_SCRIPT], capture_output=True, text=True, timeout=60
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                out = ""
            self._frameworks = dict(p.split("==", 1) for p in out.split() if "==" in p)
        return self._frameworks

    def cleanup(self) -> None:
        """Nothing outlives a process run (its PID namespace and cgroup die with it)."""

    async def shutdown(self) -> None:
        """End the warm runners."""
        await self.runners.close_all()

    def _readonly(self, runtime: str) -> list[Path]:
        """What the task sees read-only: the node's interpreter and the job's environment.

        The environment (`ensure_env`: a virtualenv of the node's interpreter, `runtime` its
        bin/python) is found from its path, never by running it: its site-packages hold the
        job's wheels, and a `.pth` file among them runs code at interpreter start-up, which
        must only ever happen inside the sandbox.
        """
        paths = list(sandbox.interpreter_paths(self.python))
        if runtime != self.python:
            paths.append(Path(runtime).parent.parent)
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

    def _command(self, spec: RunSpec, argv: list[str], folder: Path) -> list[str]:
        return sandbox.wrap(
            [spec.runtime, *argv],
            folder,
            self.isolation,
            [*self._readonly(spec.runtime), *([spec.data] if spec.data else [])],
            etc=self.etc,
            devices=sorted(glob.glob("/dev/nvidia*")) if spec.gpu else [],
            memory_mb=spec.memory_mb,
        )

    async def _start(
        self, spec: RunSpec, cmd: list[str], cwd: Path, **kwargs: Any
    ) -> tuple[asyncio.subprocess.Process, _Protocol, Callable[[], Any], cgroups.TaskGroup | None]:
        """Start a sandboxed process in its own cgroup; also hands back what kills it all and
        the cgroup (None where the node makes none): whether the OOM killer took any of it and
        its memory are asked of it before the kill."""
        mem = spec.memory_mb << 20
        group = self.cgroups.create(f"task-{secrets.token_hex(6)}", mem) if self.cgroups else None
        try:
            proc, protocol = await _spawn(
                cmd,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_limits(spec, self._nproc(), group),
                **kwargs,
            )
        except BaseException:
            if group is not None:
                group.kill()
            raise

        async def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if group is not None:
                await asyncio.to_thread(group.kill)

        return proc, protocol, kill, group

    def _hand_over(self, spec: RunSpec) -> None:
        if self.user.switches:  # the task's uid writes its model here, and nowhere else
            os.chown(spec.workdir, self.user.uid or 0, self.user.gid or 0)

    def _warm_key(self, spec: RunSpec) -> WarmKey | None:
        return key_of(spec) if self.isolation == WARM_ISOLATION else None

    async def _start_runner(self, key: WarmKey, spec: RunSpec, preload: tuple[str, ...]) -> Runner:
        """A runner for `key` in a sandbox that shows the job's folder read-write.

        Raises:
            RunnerGone: it did not start or did not get ready in time.
        """
        assert spec.warm is not None
        folder = spec.warm.folder
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = runner_argv(f"--control-fd {theirs.fileno()}", str(folder), preload)
        env = {k: v for k, v in spec.env.items() if not k.startswith("GRIDX_")}
        env["HOME"] = str(folder)
        try:
            proc, _, kill, group = await self._start(
                spec,
                self._command(spec, argv, folder),
                folder,
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:
            ours.close()
            raise RunnerGone(f"could not start: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        assert proc.stderr is not None
        errors = asyncio.ensure_future(
            drain(proc.stderr, self.state_dir / "sandbox" / "runner.log")
        )

        async def end() -> None:
            await kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            errors.cancel()

        async def out_of_memory() -> bool:
            return group is not None and group.oom_killed()

        memory = group.memory_mb if group is not None else None
        return await Runner.started(key, ours, end, out_of_memory, memory)

    async def _cold(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """The script in a fresh interpreter of its own."""
        cmd = self._command(spec, ["-u", spec.script, *spec.argv], spec.workdir)
        started = time.monotonic()
        proc, protocol, kill, group = await self._start(
            spec,
            cmd,
            spec.workdir,
            env=spec.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        drains = asyncio.gather(
            drain(proc.stdout, spec.logdir / "stdout.log", spec.live),
            drain(proc.stderr, spec.logdir / "stderr.log", spec.live),
        )
        killed_by_oom = False
        usage = None
        try:
            ended = await wait_or_stop(protocol.exited.wait(), cancel, spec.timeout_s, kill)
        finally:  # whatever the task left running (a daemon) goes with it
            if group is not None:
                killed_by_oom, usage = group.oom_killed(), group.memory_mb()
            await kill()
        tail = await collect(drains)
        duration = time.monotonic() - started
        rc = proc.returncode
        if not ended:
            return stopped(spec, cancel, rc, tail, duration)
        result = await judge(spec, rc, tail, duration, oom=killed_by_oom)
        result.peak_mb = usage[1] if usage else None
        return result

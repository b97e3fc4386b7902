"""Running train.py: the run contract shared by executors, and the `process` executor
(a sandboxed subprocess with rlimits and a timeout). The `docker` executor is in
`docker_executor.py`."""

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msgspec

from gridx.node import cgroups, sandbox
from gridx.node.environments import ensure_env
from gridx.node.state import STATE_MODE

log = logging.getLogger("gridx.node")
TAIL_BYTES = 8192
LOG_CAP = 8 << 20  # bytes of stdout / stderr kept on the node per run
MAX_METRICS_BYTES = 64 * 1024


@dataclass
class RunSpec:
    """One run of a training script."""

    workdir: Path
    logdir: Path
    runtime: str
    """What runs the script: an interpreter path (process) or an image tag (docker)."""
    env: dict[str, str]
    timeout_s: float
    memory_mb: int
    max_output_bytes: int
    gpu: bool = False
    """Pass the node's GPUs through to the script."""
    argv: list[str] = field(default_factory=list)
    """Arguments after the script (the sandbox self-test's probe takes some)."""
    script: str = "train.py"
    """The script to run in the work folder (`evaluate.py` for a held-out evaluation)."""
    wants_model: bool = True
    """The run must write a model (training); an evaluation writes only metrics."""


@dataclass
class RunResult:
    """What came of a run. `code` is None on success, else a reason code."""

    code: str | None
    message: str
    exit_code: int | None
    stderr_tail: str
    duration_s: float
    output: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the script produced weights."""
        return self.code is None


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


def read_metrics(path: Path) -> dict[str, float]:
    """The numeric entries of metrics.json (anything else in it is ignored)."""
    if not path.exists() or path.stat().st_size > MAX_METRICS_BYTES:
        return {}
    try:
        raw = msgspec.json.decode(path.read_bytes())
    except msgspec.DecodeError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(k)[:100]: float(v)
        for k, v in list(raw.items())[:64]
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    }


class Executor(Protocol):
    """Something that can run a training script."""

    name: str
    isolation: str

    async def prepare(self, requirements: Path | None, sha256: str | None) -> str:
        """The runtime (interpreter or image) with the job's requirements installed."""
        ...

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """Run the script in `spec.workdir`; stop early when `cancel` is set."""
        ...

    def cleanup(self) -> None:
        """Remove what earlier runs of this node left behind."""
        ...


def make_executor(
    kind: str, state_dir: Path, python: str, node_id: str, isolation: str = "auto"
) -> Executor:
    """`auto` (docker when an engine answers and has the executor image, else process),
    `docker` or `process` (under `isolation`: `auto` for the strongest that works).

    Raises:
        SystemExit: `docker` asked for and no engine answers, or its image is missing.
    """
    if kind in ("auto", "docker"):
        from gridx.node.docker_executor import DockerExecutor, docker_available

        if docker_available():
            try:
                return DockerExecutor(node_id=node_id)
            except SystemExit as exc:
                if kind == "docker":
                    raise
                log.warning("not using Docker: %s", exc)
        elif kind == "docker":
            raise SystemExit(
                "--executor docker: no Docker engine answers (is dockerd running? DOCKER_HOST?)"
            )
    return ProcessExecutor(state_dir, python, node_id, None if isolation == "auto" else isolation)


async def wait_or_stop(
    finished: Awaitable[object],
    cancel: asyncio.Event,
    timeout_s: float,
    kill: Callable[[], Awaitable[None]],
) -> bool:
    """Wait for a run to end; `kill` it at the timeout or when `cancel` is set.

    Returns:
        True when the run ended by itself.
    """
    waiter = asyncio.ensure_future(finished)
    stopper = asyncio.ensure_future(cancel.wait())
    try:
        done, _ = await asyncio.wait(
            {waiter, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
        if not waiter.done():
            await kill()
            await waiter
    return waiter in done


def stopped(
    spec: RunSpec, cancel: asyncio.Event, rc: int | None, tail: str, duration: float
) -> RunResult:
    """The result of a run that was killed: cancelled on request, or past its timeout."""
    if cancel.is_set():
        return RunResult("cancelled", "stopped on request", rc, tail, duration)
    msg = f"train.py ran past the task timeout of {spec.timeout_s:.0f}s"
    return RunResult("timeout", msg, rc, tail, duration)


def judge(
    spec: RunSpec, rc: int | None, tail: str, duration: float, oom: bool = False
) -> RunResult:
    """Turn a finished run into a result with a reason code (None when weights were written)."""
    if oom and rc != 0:  # (a child killed while train.py went on to finish is its business)
        msg = f"train.py ran out of memory (limit {spec.memory_mb} MiB)"
        return RunResult("out_of_memory", msg, rc, tail, duration)
    if rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        msg = f"train.py wrote a file over the output cap of {spec.max_output_bytes} bytes"
        return RunResult("output_too_large", msg, rc, tail, duration)
    if rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return RunResult("timeout", "train.py used up its CPU-time limit", rc, tail, duration)
    if rc != 0:
        if "MemoryError" in tail or "Cannot allocate memory" in tail or rc == -signal.SIGKILL:
            msg = f"train.py ran out of memory (limit {spec.memory_mb} MiB) or was killed"
            return RunResult("out_of_memory", msg, rc, tail, duration)
        return RunResult(
            "nonzero_exit", f"{spec.script} exited with status {rc}", rc, tail, duration
        )
    if not spec.wants_model:
        metrics = read_metrics(spec.workdir / "metrics.json")
        if not metrics:
            msg = f"{spec.script} finished but wrote no numeric metrics to $GRIDX_METRICS"
            return RunResult("missing_metrics", msg, rc, tail, duration)
        return RunResult(None, "ok", rc, tail, duration, metrics=metrics)
    output = next(
        (p for p in (spec.workdir / "model.pth", spec.workdir / "model.safetensors") if p.exists()),
        None,
    )
    if output is None:
        msg = "train.py finished but wrote no model.pth (save to $GRIDX_OUTPUT)"
        return RunResult("missing_output", msg, rc, tail, duration)
    if output.stat().st_size > spec.max_output_bytes:
        msg = f"{output.name} is over the output cap of {spec.max_output_bytes} bytes"
        return RunResult("output_too_large", msg, rc, tail, duration)
    metrics = read_metrics(spec.workdir / "metrics.json")
    return RunResult(None, "ok", rc, tail, duration, output=output, metrics=metrics)


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

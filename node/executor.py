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
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from gridx.node import sandbox
from gridx.node.environments import ensure_env

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


def make_executor(kind: str, state_dir: Path, python: str, node_id: str) -> Executor:
    """`auto` (docker when an engine answers and has the executor image, else process),
    `docker` or `process`.

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
    return ProcessExecutor(state_dir=state_dir, python=python)


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
    if oom:
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
        return RunResult("nonzero_exit", f"train.py exited with status {rc}", rc, tail, duration)
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


class ProcessExecutor:
    """Runs `python train.py` under the host's best isolation, always with rlimits and a timeout."""

    name = "process"

    def __init__(self, state_dir: Path, python: str, isolation: str | None = None) -> None:
        self.state_dir = state_dir
        self.python = python
        self.isolation = isolation or sandbox.detect()

    async def prepare(self, requirements: Path | None, sha256: str | None) -> str:
        """A virtualenv with the requirements (cached by hash), or the node's interpreter."""
        if requirements is None or sha256 is None:
            return self.python
        return await ensure_env(requirements, sha256, self.state_dir / "envs", self.python)

    def cleanup(self) -> None:
        """Nothing outlives a process run (bubblewrap dies with its parent)."""

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """Run the script; kill it on timeout or when `cancel` is set."""
        spec.logdir.mkdir(parents=True, exist_ok=True)
        out_log, err_log = spec.logdir / "stdout.log", spec.logdir / "stderr.log"
        # The task must not see the node's state folder (its token) but needs the interpreter,
        # and the job's virtualenv under state/envs when it has one.
        readonly = list(sandbox.interpreter_paths(self.python))
        if spec.runtime != self.python:
            readonly.append((self.state_dir / "envs").resolve())
        cmd = sandbox.wrap(
            [spec.runtime, "-u", "train.py"],
            spec.workdir,
            self.isolation,
            [self.state_dir.resolve()],
            readonly,
            devices=sorted(glob.glob("/dev/nvidia*")) if spec.gpu else [],
        )
        mem = spec.memory_mb << 20
        cpu_s = int(spec.timeout_s * (os.cpu_count() or 1)) + 10
        fsize = spec.max_output_bytes

        def limits() -> None:  # runs in the child before exec
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=spec.workdir,
            env=spec.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=limits,
        )
        assert proc.stdout is not None and proc.stderr is not None
        drains = asyncio.gather(_drain(proc.stdout, out_log), _drain(proc.stderr, err_log))

        async def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        ended = await wait_or_stop(proc.wait(), cancel, spec.timeout_s, kill)
        try:  # a descendant that escaped the kill could hold the pipes open
            _, tail = await asyncio.wait_for(drains, 10)
        except TimeoutError:
            tail = "(output streams still open 10 s after the run ended; stopped reading)"
        duration = time.monotonic() - started
        rc = proc.returncode
        if not ended:
            return stopped(spec, cancel, rc, tail, duration)
        return judge(spec, rc, tail, duration)

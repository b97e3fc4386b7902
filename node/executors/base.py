"""The executor contract: what a run is given (`RunSpec`), what comes back (`RunResult`), the
`Executor` protocol every executor implements, and the rules they share for judging a run."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from gridx.node.live_output import LiveOutput
from gridx.node.outputs import UnsafeOutput, copy_output, read_output
from gridx.node.waiting import until
from gridx.node.wheels import Progress, quiet

log = logging.getLogger("gridx.node")
TAIL_BYTES = 8192
LOG_CAP = 8 << 20  # bytes of stdout / stderr kept on the node per run
MAX_METRICS_BYTES = 64 * 1024
METRICS = "metrics.json"
MODEL_NAMES = ("model.pth", "model.safetensors")


@dataclass(frozen=True)
class Warm:
    """A task that may run in its job's warm runner (see `warm.py`)."""

    job_id: str
    folder: Path
    """The job's folder on this node: every task's work folder is inside it."""
    preload: tuple[str, ...] = ()
    """Modules the runner imports once for all the job's tasks."""


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
    warm: Warm | None = None
    """Run in the job's warm runner where the executor has one (None: a cold start)."""
    data: Path | None = None
    """A folder of this node's own data, shown read-only at the same path (node-local jobs)."""
    live: LiveOutput = field(default_factory=LiveOutput)
    """What the run prints, as it prints it (stdout and stderr in arrival order)."""


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
    peak_mb: int | None = None
    """The task's peak memory (its sandbox's, a warm runner's own excluded), where measured."""

    @property
    def ok(self) -> bool:
        """True when the script succeeded (a training task's weights in `output`; an evaluation
        has none)."""
        return self.code is None


async def drain(stream: asyncio.StreamReader, log: Path, live: LiveOutput | None = None) -> str:
    """Read a run's output to the end: the first LOG_CAP bytes go to `log`, each chunk to
    `live` as it comes, the last TAIL_BYTES come back. A script printing gigabytes fills
    neither the disk nor the node's memory."""
    written = 0
    tail = bytearray()
    with log.open("wb") as fh:
        while chunk := await stream.read(1 << 16):
            if live is not None:
                live.write(chunk)
            if written < LOG_CAP:
                fh.write(chunk[: LOG_CAP - written])
                written += len(chunk)
            tail += chunk
            if len(tail) > 2 * TAIL_BYTES:
                del tail[:-TAIL_BYTES]
    return bytes(tail[-TAIL_BYTES:]).decode("utf-8", "replace")


async def collect(drains: Awaitable[tuple[str, str]]) -> str:
    """The stderr tail of a run's (stdout, stderr) drains, once both streams end."""
    try:  # a descendant that escaped the kill could hold the pipes open
        _, tail = await asyncio.wait_for(drains, 10)
    except TimeoutError:
        return "(output streams still open 10 s after the run ended; stopped reading)"
    return tail


def read_metrics(workdir: Path) -> dict[str, float]:
    """The numeric entries of the run's metrics.json (anything else in it is ignored).

    Raises:
        UnsafeOutput: it is not a plain file of the task's, or is over `MAX_METRICS_BYTES`.
    """
    raw_bytes = read_output(workdir, METRICS, MAX_METRICS_BYTES)
    if raw_bytes is None:
        return {}
    try:
        raw = msgspec.json.decode(raw_bytes)
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

    async def prepare(
        self, requirements: Path | None, sha256: str | None, progress: Progress = quiet
    ) -> str:
        """The runtime (interpreter or image) with the job's requirements installed;
        `progress` hears what it is doing (downloading, installing) while it takes time."""
        ...

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """Run the script in `spec.workdir`; stop early when `cancel` is set."""
        ...

    def frameworks(self) -> dict[str, str]:
        """{name: version} of the pinned frameworks (torch, ...) its tasks get."""
        ...

    def cleanup(self) -> None:
        """Remove what earlier runs of this node left behind."""
        ...

    async def shutdown(self) -> None:
        """End what the executor keeps between runs (its warm runners)."""
        ...


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
    try:
        await until(waiter, cancel, timeout_s)
        return waiter.done()
    finally:
        if not waiter.done():  # past the timeout, stopped, or this wait itself cancelled
            await kill()
            await waiter


def stopped(
    spec: RunSpec, cancel: asyncio.Event, rc: int | None, tail: str, duration: float
) -> RunResult:
    """The result of a run that was killed: cancelled on request, or past its timeout."""
    if cancel.is_set():
        return RunResult("cancelled", "stopped on request", rc, tail, duration)
    msg = f"{spec.script} ran past the task timeout of {spec.timeout_s:.0f}s"
    return RunResult("timeout", msg, rc, tail, duration)


async def judge(
    spec: RunSpec, rc: int | None, tail: str, duration: float, oom: bool = False
) -> RunResult:
    """Turn a finished run into a result with a reason code (None when weights were written).
    Its outputs are read as untrusted files (`outputs.py`), off the event loop; the model is
    copied to the node's own log folder, which no task sees, and uploaded from there."""
    if oom and rc != 0:  # (a child killed while the script went on to finish is its business)
        msg = f"{spec.script} ran out of memory (limit {spec.memory_mb} MiB)"
        return RunResult("out_of_memory", msg, rc, tail, duration)
    if rc in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        msg = f"{spec.script} wrote a file over the output cap of {spec.max_output_bytes} bytes"
        return RunResult("output_too_large", msg, rc, tail, duration)
    if rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        msg = f"{spec.script} used up its CPU-time limit"
        return RunResult("timeout", msg, rc, tail, duration)
    if rc != 0:
        if "MemoryError" in tail or "Cannot allocate memory" in tail or rc == -signal.SIGKILL:
            msg = f"{spec.script} ran out of memory (limit {spec.memory_mb} MiB) or was killed"
            return RunResult("out_of_memory", msg, rc, tail, duration)
        return RunResult(
            "nonzero_exit", f"{spec.script} exited with status {rc}", rc, tail, duration
        )
    try:
        return await asyncio.to_thread(_collect_outputs, spec, rc, tail, duration)
    except UnsafeOutput as exc:
        return RunResult(exc.code, f"{spec.script}: {exc}", rc, tail, duration)


def _collect_outputs(spec: RunSpec, rc: int | None, tail: str, duration: float) -> RunResult:
    metrics = read_metrics(spec.workdir)
    if not spec.wants_model:
        if not metrics:
            msg = f"{spec.script} finished but wrote no numeric metrics to $GRIDX_METRICS"
            return RunResult("missing_metrics", msg, rc, tail, duration)
        return RunResult(None, "ok", rc, tail, duration, metrics=metrics)
    for name in MODEL_NAMES:
        dest = spec.logdir / f"result{Path(name).suffix}"
        if copy_output(spec.workdir, name, spec.max_output_bytes, dest) is not None:
            return RunResult(None, "ok", rc, tail, duration, output=dest, metrics=metrics)
    msg = f"{spec.script} finished but wrote no model.pth (save to $GRIDX_OUTPUT)"
    return RunResult("missing_output", msg, rc, tail, duration)

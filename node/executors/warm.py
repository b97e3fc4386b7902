"""Warm runners, the node's side: one sandboxed `runner.py` per job, started once, which forks a
fresh child for each task (see `runner.py` for what keeps tasks apart).

A runner is keyed by what must be equal for two tasks to share it: the job, its interpreter or
image, its GPU flag and its preload list. Two jobs never share one. It ends when its job's tasks
stop coming (`IDLE_S`), when a task of it is cancelled or runs past its time (the whole sandbox
is killed then, so nothing of that task lingers), when it reports it could not make itself clean,
or when more than `MAX_RUNNERS` are warm (least recently used first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from gridx.node.executors.base import RunResult, RunSpec, collect, drain, judge, stopped
from gridx.node.memory import MemoryBudget
from gridx.node.waiting import until

log = logging.getLogger("gridx.node.warm")
SOURCE = (Path(__file__).parent / "runner.py").read_text()
IDLE_S = 120.0
MAX_RUNNERS = 2
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WarmKey:
    """What two tasks must share to run in one runner."""

    job_id: str
    runtime: str
    gpu: bool
    preload: tuple[str, ...]
    data: str = ""
    """The node-local data folder its sandbox shows (a new version: a new runner)."""


def key_of(spec: RunSpec) -> WarmKey | None:
    """The runner a task may use, or None for a cold start."""
    if spec.warm is None:
        return None
    data = str(spec.data) if spec.data else ""
    return WarmKey(spec.warm.job_id, spec.runtime, spec.gpu, spec.warm.preload, data)


COMPANIONS = {"torch": ("torch.nn", "torch.optim", "torch._dynamo")}
"""What a preload brings along: the modules a training script's first optimizer step imports
(`torch._dynamo` alone is 800, loaded lazily by torch's `_disable_dynamo` wrappers): the digits
example's task took 2.8 s in a fresh child of a runner that had imported only `torch`, 0.03 s
with these, for about 70 MB more in the runner."""
PRELOAD_MIN_MB = 1024
"""Tasks capped below this get a warm interpreter with nothing preloaded: the runner's memory
counts against the task's cap (torch alone is about 220 MB, and every process the task forks
copies its page tables), and a small cap is the task's to spend."""


def preloads(preload: tuple[str, ...], memory_mb: int) -> tuple[str, ...]:
    """What a runner for tasks capped at `memory_mb` imports: `preload` and what each brings
    along (`COMPANIONS`), or nothing under `PRELOAD_MIN_MB`."""
    if memory_mb < PRELOAD_MIN_MB:
        return ()
    extra = (c for p in preload for c in COMPANIONS.get(p, ()) if c not in preload)
    return (*preload, *dict.fromkeys(extra))


def runner_argv(control: str, jobdir: str, preload: tuple[str, ...]) -> list[str]:
    """The arguments after the interpreter that start a runner."""
    return [
        "-u",
        "-c",
        SOURCE,
        *control.split(" ", 1),
        "--jobdir",
        jobdir,
        "--preload",
        ",".join(preload),
    ]


Memory = Callable[[], "tuple[int, int] | None"]
"""(now, peak) MiB of a runner's sandbox, where the executor can tell."""


class RunnerGone(Exception):
    """The runner ended or broke its protocol; the node starts another."""


async def _read_pipe(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 16)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader


class Runner:
    """One started runner: its control socket and a way to kill its whole sandbox."""

    def __init__(
        self,
        key: WarmKey,
        control: socket.socket,
        kill: Callable[[], Awaitable[None]],
        oom: Callable[[], Awaitable[bool]],
        memory: Memory | None = None,
    ) -> None:
        self.key = key
        self.control = control
        self._kill = kill
        self._oom = oom
        """Whether the OOM killer took a process of its sandbox (asked before the kill)."""
        self.dead = False
        self.dirty = False
        self.used = time.monotonic()
        self.tasks = 0
        self.preloaded: list[str] = []
        self._memory = memory
        self.memory_mb: int | None = None  # its sandbox's once its preloads are in

    def peak_mb(self) -> int | None:
        """Its sandbox's peak memory so far, runner and tasks (None: not measured)."""
        usage = self._memory() if self._memory else None
        return usage[1] if usage else None

    async def _receive(self) -> dict[str, object]:
        data = await asyncio.get_running_loop().sock_recv(self.control, 1 << 16)
        if not data:
            raise RunnerGone("the runner closed its socket")
        message = json.loads(data)
        if "error" in message:
            raise RunnerGone(str(message["error"]))
        return message

    @classmethod
    async def started(
        cls,
        key: WarmKey,
        control: socket.socket,
        kill: Callable[[], Awaitable[None]],
        oom: Callable[[], Awaitable[bool]],
        memory: Memory | None = None,
    ) -> Runner:
        """A runner just launched, once it has imported its preloads (its first message).

        Raises:
            RunnerGone: it ended or said nothing within START_TIMEOUT_S (it is killed).
        """
        runner = cls(key, control, kill, oom, memory)
        try:
            message = await asyncio.wait_for(runner._receive(), START_TIMEOUT_S)
        except (RunnerGone, TimeoutError) as exc:
            await runner.kill()
            raise RunnerGone(f"did not start ({exc})") from exc
        runner.preloaded = [str(p) for p in message.get("preloaded", [])]  # type: ignore[attr-defined]
        usage = memory() if memory else None
        runner.memory_mb = usage[0] if usage else None
        return runner

    async def _outcome(self) -> int | None:
        """The child's exit status, or None when the runner died or broke its protocol."""
        try:
            message = await self._receive()
            if "started" in message:
                message = await self._receive()
            if message.get("clean") is False:
                self.dirty = True
            return int(message["rc"])  # type: ignore[call-overload]
        except (RunnerGone, KeyError, ValueError, OSError) as exc:
            log.warning("warm runner of job %s broke: %s", self.key.job_id, exc)
            return None

    async def kill(self) -> None:
        """End the runner and everything in its sandbox (no receive may be pending)."""
        if not self.dead:
            self.dead = True
            await self._kill()
            with contextlib.suppress(OSError):
                self.control.close()

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """One task in a fresh child of the runner.

        Raises:
            RunnerGone: the runner was dead before the task began (nothing of it ran).
        """
        self.used = time.monotonic()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        command = {
            "workdir": str(spec.workdir),
            "script": spec.script,
            "argv": spec.argv,
            "env": spec.env,
            "keep": [str(spec.workdir)],
        }
        try:
            socket.send_fds(self.control, [json.dumps(command).encode()], [out_w, err_w])
        except OSError as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            raise RunnerGone(f"the runner is gone ({exc})") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        drains = asyncio.gather(
            drain(await _read_pipe(out_r), spec.logdir / "stdout.log", spec.live),
            drain(await _read_pipe(err_r), spec.logdir / "stderr.log", spec.live),
        )
        started = time.monotonic()
        self.tasks += 1
        outcome = await until(self._outcome(), cancel, spec.timeout_s)
        ended = outcome.done()
        if not ended:
            outcome.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outcome
        rc = outcome.result() if ended else None
        oom = ended and (rc is None or rc < 0) and await self._oom()  # killed: by the kernel?
        peak = self.peak_mb()
        if rc is None or self.dirty:  # stopped, or it broke its runner: nothing of it stays
            await self.kill()
        tail = await collect(drains)
        duration = time.monotonic() - started
        self.used = time.monotonic()
        if not ended:
            return stopped(spec, cancel, rc, tail, duration)
        result = await self._judged(spec, rc, oom, tail, duration)
        if peak is not None and self.memory_mb is not None:
            result.peak_mb = max(1, peak - self.memory_mb)
        return result

    @staticmethod
    async def _judged(
        spec: RunSpec, rc: int | None, oom: bool, tail: str, duration: float
    ) -> RunResult:
        if rc is None and oom:
            msg = f"{spec.script} ran out of memory (limit {spec.memory_mb} MiB)"
            return RunResult("out_of_memory", msg, None, tail, duration)
        if rc is None:
            msg = f"{spec.script} ended the warm runner it ran in (not out of memory)"
            return RunResult("runner_ended", msg, None, tail, duration)
        return await judge(spec, rc, tail, duration, oom=oom)


Starter = Callable[[WarmKey, RunSpec, tuple[str, ...]], Awaitable[Runner]]


class Runners:
    """The warm runners of an executor, by key, with their idle timers."""

    def __init__(
        self,
        start: Starter,
        idle_s: float = IDLE_S,
        limit: int = MAX_RUNNERS,
        budget: MemoryBudget | None = None,
    ) -> None:
        self._start = start
        self.budget = budget  # where given, a runner starts only where it fits beside its task
        self.idle_s = idle_s
        self.limit = limit
        self.warm: dict[WarmKey, Runner] = {}
        self.cold: set[WarmKey] = set()
        """Keys whose runner would not start even without preloads: their tasks start cold."""
        self._timers: dict[WarmKey, asyncio.TimerHandle] = {}
        self._closing: set[asyncio.Future[None]] = set()

    async def get(self, key: WarmKey, spec: RunSpec) -> Runner | None:
        """The key's live runner, else a new one (closing the least recently used over limit);
        None when no runner starts for it."""
        runner = self.warm.get(key)
        if runner is not None and not runner.dead:
            self._disarm(key)
            return runner
        await self.close(key)
        if key in self.cold:
            return None
        while len(self.warm) >= self.limit:
            oldest = min(self.warm.values(), key=lambda r: r.used)
            await self.close(oldest.key)
        # a preload can end the runner outright (a library that aborts under the memory cap):
        # then the job's tasks import it themselves, as they would cold
        fuller = preloads(key.preload, spec.memory_mb)
        if self.budget is not None and self.budget.warm_refusal(key.job_id, fuller):
            log.info("warm runner %s", self.budget.warm_note)  # (memory may free up later)
            return None
        for preload in dict.fromkeys((fuller, fuller[: len(key.preload)], ())):
            try:
                runner = await self._start(key, spec, preload)
            except (RunnerGone, OSError) as exc:  # never the worker's end: the task runs cold
                log.warning("warm runner of job %s (preload %s): %s", key.job_id, preload, exc)
                continue
            if not await self._fits(runner, preload):
                return None
            self.warm[key] = runner
            log.info("warm runner for job %s (preloaded %s)", key.job_id, runner.preloaded)
            return runner
        self.cold.add(key)
        return None

    async def _fits(self, runner: Runner, preload: tuple[str, ...]) -> bool:
        """Whether the runner just started, measured, leaves its job's task room (else it ends)."""
        if self.budget is None or runner.memory_mb is None:
            return True
        self.budget.runners[preload] = runner.memory_mb
        if self.budget.warm_refusal(runner.key.job_id, preload, runner.memory_mb) is None:
            return True
        log.info("warm runner %s", self.budget.warm_note)
        await runner.kill()
        return False

    async def run(self, key: WarmKey, spec: RunSpec, cancel: asyncio.Event) -> RunResult | None:
        """The task in the key's runner (one that died while idle is replaced, once); None when
        no runner starts for it (the executor then runs it cold)."""
        try:
            for _ in range(2):
                runner = await self.get(key, spec)
                if runner is None:
                    return None
                try:
                    return await runner.run(spec, cancel)
                except RunnerGone as exc:
                    log.warning("warm runner of job %s: %s", key.job_id, exc)
                    await self.close(key)
        finally:
            self.release(key)
        return None

    def release(self, key: WarmKey) -> None:
        """The key's task is over: forget a dead runner, time out a live one."""
        runner = self.warm.get(key)
        if runner is None:
            return
        if runner.dead:
            del self.warm[key]
            return
        self._timers[key] = asyncio.get_running_loop().call_later(self.idle_s, self._expire, key)

    def _expire(self, key: WarmKey) -> None:
        """The idle timer fired: close the runner in a task kept until it is done."""
        closing = asyncio.ensure_future(self.close(key))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    def _disarm(self, key: WarmKey) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    async def close(self, key: WarmKey) -> None:
        """End the key's runner, if any."""
        self._disarm(key)
        runner = self.warm.pop(key, None)
        if runner is not None:
            log.info("warm runner for job %s ended after %d tasks", key.job_id, runner.tasks)
            await runner.kill()

    async def close_all(self) -> None:
        """End every runner (the node is stopping), those closing on their own included."""
        for key in list(self.warm):
            await self.close(key)
        await asyncio.gather(*self._closing, return_exceptions=True)


class WarmOrCold:
    """The one `run()` of the executors that keep warm runners: a task in its job's runner
    where it may (`key_of`), else a cold start; the executor says how its task's folder is
    handed over (`_hand_over`), whether it may run warm (`_warm_key`) and how it runs cold."""

    runners: Runners

    def _hand_over(self, spec: RunSpec) -> None:
        """Let the task's user write its work folder."""
        raise NotImplementedError

    def _warm_key(self, spec: RunSpec) -> WarmKey | None:
        return key_of(spec)

    async def _cold(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        raise NotImplementedError

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        """Run the script, warm where it may; kill it (its process tree, container or runner's
        sandbox) on timeout or when `cancel` is set."""
        spec.logdir.mkdir(parents=True, exist_ok=True)
        self._hand_over(spec)
        key = self._warm_key(spec)
        result = await self.runners.run(key, spec, cancel) if key is not None else None
        return result or await self._cold(spec, cancel)

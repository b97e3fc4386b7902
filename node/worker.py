"""The node's main loop: claim, run, report; a heartbeat side task; clean shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import time
from collections import deque
from functools import partial
from pathlib import Path

from gridx.node.availability import Schedule, credit, parse_hours
from gridx.node.client import FRESH_LINK_S, CoordinatorClient
from gridx.node.config import NodeConfig
from gridx.node.datasets import Catalog
from gridx.node.enrolment import capabilities
from gridx.node.errors import (
    Banned,
    CoordinatorError,
    DatasetError,
    IntegrityError,
    NotEnrolled,
    RequirementsError,
    TransportError,
)
from gridx.node.executors.base import Executor, RunResult, RunSpec, Warm
from gridx.node.live_output import LiveOutput
from gridx.node.memory import MemoryBudget
from gridx.node.outage import Outage
from gridx.node.own_paths import OwnPaths
from gridx.node.progress import Meter
from gridx.node.projects import ProjectError
from gridx.node.selftest import SandboxReport, explain
from gridx.node.state import Identity
from gridx.node.task_env import task_env
from gridx.node.task_inputs import TaskInputs, remove_folder, safe_filename
from gridx.node.waiting import until
from gridx.schemas.agent import (
    Capabilities,
    CompleteTaskRequest,
    DatasetInfo,
    FailTaskRequest,
    HeartbeatRequest,
    TaskAssignment,
    TaskPhase,
    TaskStep,
)
from gridx.schemas.jobs import round_label

log = logging.getLogger("gridx.node")


class Worker:
    """Runs tasks one at a time until stopped."""

    def __init__(
        self,
        config: NodeConfig,
        client: CoordinatorClient,
        ident: Identity,
        executor: Executor,
        report: SandboxReport,
        budget: MemoryBudget | None = None,
    ) -> None:
        self.config = config
        self.budget = budget or MemoryBudget.measure(config.memory_mb)
        self.report = report
        self.client = client
        self.ident = ident
        self.executor = executor
        self.stop = asyncio.Event()
        self.current: TaskAssignment | None = None
        self.cancel_current = asyncio.Event()
        self.heartbeat_s = 1.0  # until the coordinator says otherwise
        self.tasks_run = 0
        self.prepare_s = 0.0
        """How long the current task's environment took to prepare."""
        self.leased_at = 0.0
        """When (monotonic) the current task came: its upload link's age."""
        self.draining = False
        self.started_at = time.time()
        self.history: deque[dict[str, object]] = deque(maxlen=20)
        self.catalog = Catalog(config.state_dir)
        self.schedule = Schedule(hours=parse_hours(config.hours), when_idle=config.when_idle)
        self.cpus = os.cpu_count() or 1
        self.resting: str | None = None
        """Why the node takes no task now (paused, outside its hours, busy), if it does not."""
        self.datasets_sent: list[DatasetInfo] | None = None
        """What the coordinator last acknowledged of this node's datasets."""
        self.next_task: TaskAssignment | None = None
        """Leased in the answer to the last completion: the next to run, without polling."""
        self.resting_sent: str | None = None
        """Why it rests as the coordinator last acknowledged ('' : working; None: not yet)."""
        self.outage = Outage()
        self.own = OwnPaths(config.state_dir)
        self.phase: TaskPhase | None = None
        """What the node does with its current task (sent with each heartbeat)."""
        self.live = LiveOutput()
        """What the current task prints, for the heartbeats and its result."""
        self._phase_logged = 0.0

    def request_stop(self) -> None:
        """SIGTERM / SIGINT: stop polling, hand the running task back."""
        log.info("stopping: the current task (if any) is released")
        self.stop.set()
        self.cancel_current.set()

    async def run(self) -> None:
        """Claim and run tasks until stopped (or after one task with `--once`)."""
        if self.report.level != "strong":
            log.warning("WEAK SANDBOX (--allow-weak-sandbox): %s", explain(self.report))
        else:
            log.info("tasks run under %s isolation (self-test: strong)", self.executor.isolation)
        beat = asyncio.create_task(self._heartbeats())
        try:
            while not self.stop.is_set():
                self.resting = self.schedule.why_not(
                    self.config.state_dir, dt.datetime.now(), os.getloadavg()[0], self.cpus
                )
                task, self.next_task = self.next_task, None  # one its last completion brought
                if self.draining or self.resting:  # take nothing new until the owner allows
                    if task is not None:
                        await self._release(task, self.resting or "draining")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.stop.wait(), self.heartbeat_s)
                    continue
                task = task or await self._poll()
                if task is None:
                    continue
                await self._run_task(task)
                self.tasks_run += 1
                if self.config.once:
                    break
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if self.next_task is not None:
                await self._release(self.next_task, "node shutting down")
            await self.executor.shutdown()

    async def _release(self, task: TaskAssignment, why: str) -> None:
        """Hand back a task that came with a completion and will not run here now."""
        held = {"task_id": task.task_id, "lease_token": task.lease_token}
        req = FailTaskRequest(**held, kind="released", code="released", message=why[:200])
        with contextlib.suppress(TransportError, CoordinatorError):
            await self.client.fail(req)

    async def _poll(self) -> TaskAssignment | None:
        poll = await until(self.client.request_task(self.config.poll_wait_s), self.stop)
        if not poll.done():
            poll.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poll
            return None  # a lease taken in that instant expires and is reissued
        wait = 1.0
        try:
            task = poll.result()
            self.outage.ok()
            return task
        except CoordinatorError as exc:
            if exc.status == 401:
                raise NotEnrolled(f"the coordinator refused this node's token: {exc}") from exc
            if exc.code == "node_banned":
                raise Banned(f"{exc.message} (ask the coordinator's admin why)") from exc
            log.warning("request_task failed: %s", exc)
        except TransportError as exc:
            wait = self.outage.failed("request_task", exc)
        await asyncio.sleep(wait)
        return None

    async def _datasets(self) -> list[DatasetInfo] | None:
        """The node's datasets for the next heartbeat when they changed (None: unchanged)."""
        try:
            now = await asyncio.to_thread(self.catalog.infos)
        except DatasetError as exc:
            log.warning("datasets: %s", exc)
            return None
        return None if now == self.datasets_sent else now

    async def _heartbeats(self) -> None:
        caps: Capabilities | None = capabilities(self.executor, self.report, self.budget)
        while True:
            running = [self.current.task_id] if self.current else []
            phase = self.phase if self.current else None
            # what a private job's task prints stays here (TaskAssignment.private)
            output = self.live.unsent() if self.current and not self.current.private else ""
            output = self.own.hide(output)
            resting = (self.resting or "")[:100]
            try:
                held = await self._datasets()
                resp = await self.client.heartbeat(
                    HeartbeatRequest(
                        running=running,
                        capabilities=caps,
                        datasets=held,
                        phase=phase,
                        resting=None if resting == self.resting_sent else resting,
                        output=output,
                    )
                )
                caps = None
                self.resting_sent = resting
                self.datasets_sent = held if held is not None else self.datasets_sent
                self.heartbeat_s = resp.heartbeat_s
                if resp.drain != self.draining:
                    log.info("coordinator says %s", "drain" if resp.drain else "back to work")
                    self.draining = resp.drain
                if self.current and self.current.task_id in resp.cancel:
                    log.info("coordinator says stop %s", self.current.task_id)
                    self.cancel_current.set()
                self.outage.ok()
            except TransportError as exc:
                self.outage.failed("heartbeat", exc)
            except Exception:  # a bug here must not stop the heartbeats: say where it is
                log.exception("heartbeat failed")
            await asyncio.sleep(self.heartbeat_s)

    async def _run_task(self, task: TaskAssignment) -> None:
        log.info("task %s (%s, shard %d)", task.task_id, round_label(task.round), task.shard)
        self.current = task
        self.leased_at = time.monotonic()
        self.live = LiveOutput()
        self.phase = None
        self.prepare_s = 0.0
        self.cancel_current.clear()
        name = safe_filename(task.task_id, "task")
        # the work folder is all the task sees of this machine; its logs stay outside it
        workdir, logdir = self._job_folder(task) / name, self.config.state_dir / "logs" / name
        for folder in (workdir, logdir):
            remove_folder(folder)
        workdir.mkdir(parents=True)
        try:
            result = await self._prepare_and_run(task, workdir, logdir)
            try:
                await self._report(task, result)
            except (TransportError, CoordinatorError) as exc:
                # retries are spent: the lease will expire and the shard be reissued; carry on
                log.warning("could not report task %s (%s); it will be reissued", task.task_id, exc)
        finally:
            self.current = None
            for folder in (workdir, logdir):
                remove_folder(folder)

    def _set_phase(self, step: TaskStep, detail: str = "") -> None:
        """Note what the node does with its task now; logged when the step or what it says it
        does changes (downloading, installing), and its progress at most every 10 s."""
        if self.current is None:
            return
        was = (self.phase.step, self.phase.detail.split(" ", 1)[0]) if self.phase else None
        now = time.monotonic()
        if was != (step, detail.split(" ", 1)[0]) or now - self._phase_logged >= 10:
            log.info("task %s: %s%s", self.current.task_id, step, f" ({detail})" * bool(detail))
            self._phase_logged = now
        self.phase = TaskPhase(task_id=self.current.task_id, step=step, detail=detail[:200])

    def _job_folder(self, task: TaskAssignment) -> Path:
        """Where the job's tasks work on this node (its warm runner shows this folder)."""
        return self.config.state_dir / "tasks" / safe_filename(task.job_id, "job")

    async def _prepare_and_run(
        self, task: TaskAssignment, workdir: Path, logdir: Path
    ) -> RunResult:
        env = task_env(task, workdir, self.config.cpus or os.cpu_count() or 1)
        evaluate = task.kind == "evaluate"
        script = "evaluate.py" if evaluate else task.entry or "train.py"
        self._set_phase("downloading", "the script, its data and model")
        try:
            inputs = TaskInputs(self.client, self.catalog, self.config, task, workdir, env)
            await inputs.download(logdir)
            data_dir, script = await inputs.private(script)
            runtime = await self._environment(task, logdir)
        except RequirementsError as exc:
            return RunResult(exc.code, str(exc), None, exc.tail, 0.0)
        except ProjectError as exc:
            return RunResult("invalid_project", str(exc), None, "", 0.0)
        except DatasetError as exc:
            self.datasets_sent = None  # tell the coordinator what this node holds now
            return RunResult("dataset_unavailable", str(exc), None, "", 0.0)
        except (
            IntegrityError,
            CoordinatorError,
            TransportError,
            OSError,  # where the inputs are written: a full disk, say
        ) as exc:
            return RunResult("download_failed", str(exc), None, "", 0.0)
        spec = RunSpec(
            workdir=workdir,
            logdir=logdir,
            runtime=runtime,
            env=env,
            timeout_s=task.timeout_s,
            memory_mb=self.budget.task_mb,
            max_output_bytes=task.max_result_bytes,
            gpu=task.gpu,
            script=script,
            wants_model=not evaluate,
            warm=Warm(task.job_id, self._job_folder(task), tuple(task.preload))
            if task.warm and self.config.warm
            else None,
            data=data_dir,
            live=self.live,
        )
        self._set_phase("running", f"{script}")
        result = await self.executor.run(spec, self.cancel_current)
        self.budget.ran(task.job_id, result.peak_mb)
        if result.ok:
            await inputs.keep()
        return result

    async def _environment(self, task: TaskAssignment, logdir: Path) -> str:
        """The job's environment, its requirements fetched and installed (in the sandbox)."""
        req: Path | None = None
        if task.requirements is not None:
            req = logdir / "requirements.txt"
            logdir.mkdir(parents=True, exist_ok=True)
            await self.client.download(task.requirements, req)
        self._set_phase("preparing", "the environment")
        began = time.monotonic()
        runtime = await self.executor.prepare(
            req,
            task.requirements.sha256 if task.requirements else None,
            lambda detail: self._set_phase("preparing", detail),
        )
        self.prepare_s = time.monotonic() - began
        return runtime

    async def _complete(self, task: TaskAssignment, result: RunResult) -> bool:
        """Upload the weights (an evaluation has none) and complete with the metrics; whether
        the coordinator took them."""
        try:
            sha = None
            if result.output is not None:
                size = result.output.stat().st_size
                meter = Meter("the result", size, partial(self._set_phase, "uploading"))
                old = time.monotonic() - self.leased_at > FRESH_LINK_S
                sha = await self.client.upload_result(task, result.output, old, meter)
            ack = await self.client.complete(
                CompleteTaskRequest(
                    task_id=task.task_id,
                    lease_token=task.lease_token,
                    result_sha256=sha,
                    metrics={} if task.private else result.metrics,
                    duration_s=result.duration_s,
                    output_tail="" if task.private else self.own.hide(self.live.tail()),
                    next=not (self.config.once or self.stop.is_set() or self.draining),
                )
            )
            self.next_task = ack.next_task
            args = (task.task_id, ack.status, result.duration_s, result.metrics)
            log.info("task %s %s in %.1fs %s", *args)
        except CoordinatorError as exc:
            log.warning("task %s result not accepted: %s", task.task_id, exc)
            return False
        return True

    async def _report(self, task: TaskAssignment, result: RunResult) -> None:
        self.history.appendleft(
            {
                "task": task.task_id,
                "round": task.round,
                "shard": task.shard,
                "result": result.code or "succeeded",
                "seconds": round(result.duration_s, 2),
                "prepare_seconds": round(self.prepare_s, 2),
                "finished": time.time(),
            }
        )
        if result.code == "cancelled" and not self.stop.is_set():
            log.info("task %s stopped: the coordinator no longer wants it", task.task_id)
            return
        if result.ok:
            if await self._complete(task, result):  # the owner's own tally
                credit(self.config.state_dir, result.duration_s)
            return
        if self.stop.is_set():
            kind, code, message = "released", "released", "node shutting down"
        elif result.code in ("download_failed", "dataset_unavailable"):
            kind, code, message = "node_error", result.code, result.message
        else:
            kind, code, message = "user_error", result.code or "error", result.message
        log.warning("task %s failed: [%s] %s", task.task_id, code, message)
        tail = result.stderr_tail
        if task.private and kind == "user_error":  # the script's words stay here (see the log)
            message, tail = "details stay on this node (a private job on its own data)", ""
        await self.client.fail(
            FailTaskRequest(
                task_id=task.task_id,
                lease_token=task.lease_token,
                kind=kind,  # type: ignore[arg-type]
                code=code,
                message=self.own.hide(message),
                stderr_tail=self.own.hide(tail),
            )
        )

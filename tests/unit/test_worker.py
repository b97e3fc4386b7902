"""The node's worker loop without processes or a network: a fake coordinator client (tasks handed
out from a list, every call recorded) and a fake executor (runs nothing, answers as told). What
the worker does with each outcome: a result uploaded then completed, a script's failure
reported, a stop mid-task handed back, a coordinator's cancel obeyed, an outage ridden out."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gridx.node import availability
from gridx.node.config import NodeConfig
from gridx.node.errors import TransportError
from gridx.node.executors.base import RunResult, RunSpec
from gridx.node.selftest import PROBES, SandboxReport
from gridx.node.state import Identity
from gridx.node.worker import Worker
from gridx.schemas.agent import (
    BlobRef,
    CompleteTaskRequest,
    FailTaskRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    TaskAck,
    TaskAssignment,
)

SCRIPT = b"print('hi')\n"


def _task(task_id: str = "t1") -> TaskAssignment:
    code = BlobRef(url="/code", sha256=hashlib.sha256(SCRIPT).hexdigest(), size=12, name="x")
    return TaskAssignment(
        task_id=task_id, job_id="j1", round=0, rounds=1, shard=0, num_shards=1, epochs=1, seed=0,
        lease_token="lease", lease_expires_at=0, timeout_s=60, code=code, requirements=None,
        data=None, init_model=None, upload_url="/up", max_result_bytes=1 << 20,
    )  # fmt: skip


class FakeClient:
    """The coordinator as the worker sees it: `tasks` handed out in order (an exception is
    raised instead), then nothing; every completion, failure and upload recorded."""

    def __init__(self, tasks: list[TaskAssignment | Exception]) -> None:
        self.tasks = tasks
        self.completed: list[CompleteTaskRequest] = []
        self.failed: list[FailTaskRequest] = []
        self.uploaded: list[bytes] = []
        self.heartbeats: list[HeartbeatRequest] = []
        self.cancel: list[str] = []
        self.following: dict[str, TaskAssignment] = {}
        """The task a completion of the key brings, where it asks (`next`)."""
        self.polls = 0
        self.reported = asyncio.Event()
        """Set at each completion or failure."""

    async def until(self, done: Callable[[], bool]) -> None:
        while True:
            self.reported.clear()  # before looking: a report in between sets it again
            if done():
                return
            await asyncio.wait_for(self.reported.wait(), 10)

    async def request_task(self, wait_s: float) -> TaskAssignment | None:
        self.polls += 1
        if not self.tasks:
            await asyncio.sleep(0.01)
            return None
        task = self.tasks.pop(0)
        if isinstance(task, Exception):
            raise task
        return task

    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResponse:
        self.heartbeats.append(req)
        return HeartbeatResponse(heartbeat_s=0.01, cancel=self.cancel)

    async def download(self, ref: BlobRef, dest: Path) -> None:
        dest.write_bytes(SCRIPT)

    async def upload_result(
        self, task: TaskAssignment, path: Path, old: bool, sent: Callable[[int], None]
    ) -> str:
        self.uploaded.append(path.read_bytes())
        sent(len(self.uploaded[-1]))
        return hashlib.sha256(path.read_bytes()).hexdigest()

    async def complete(self, req: CompleteTaskRequest) -> TaskAck:
        self.completed.append(req)
        self.reported.set()
        following = self.following.pop(req.task_id, None) if req.next else None
        return TaskAck(task_id=req.task_id, status="succeeded", next_task=following)

    async def fail(self, req: FailTaskRequest) -> TaskAck | None:
        self.failed.append(req)
        self.reported.set()
        return TaskAck(task_id=req.task_id, status="failed")


Outcome = Callable[[RunSpec, asyncio.Event], Any]


class FakeExecutor:
    """Runs nothing: `outcome(spec, cancel)` says what came of each run."""

    name = "fake"
    isolation = "bubblewrap"

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.specs: list[RunSpec] = []
        self.scripts: list[bytes] = []
        self.shut = False

    async def prepare(self, requirements: Path | None, sha: str | None, progress: Any) -> Any:
        return None

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        self.specs.append(spec)
        self.scripts.append((spec.workdir / spec.script).read_bytes())
        result = self.outcome(spec, cancel)
        return await result if asyncio.iscoroutine(result) else result

    def frameworks(self) -> dict[str, str]:
        return {}

    def cleanup(self) -> None:
        pass

    async def shutdown(self) -> None:
        self.shut = True


def _weights(spec: RunSpec, cancel: asyncio.Event) -> RunResult:
    out = spec.logdir / "result.pth"
    spec.logdir.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"weights")
    return RunResult(None, "ok", 0, "", 1.5, output=out, metrics={"loss": 0.5})


def _worker(tmp_path: Path, client: FakeClient, executor: FakeExecutor, once: bool) -> Worker:
    config = NodeConfig(state_dir=tmp_path / "state", once=once, poll_wait_s=0)
    ident = Identity(coordinator_url="http://c", node_id="n1", node_token="tok")
    report = SandboxReport(isolation="bubblewrap", held=dict.fromkeys(PROBES, True))
    return Worker(config, client, ident, executor, report)  # type: ignore[arg-type]


async def test_a_result_is_uploaded_then_completed_with_its_metrics(tmp_path: Path) -> None:
    client, executor = FakeClient([_task()]), FakeExecutor(_weights)
    await asyncio.wait_for(_worker(tmp_path, client, executor, once=True).run(), 10)
    assert client.uploaded == [b"weights"]
    (done,) = client.completed
    assert done.result_sha256 == hashlib.sha256(b"weights").hexdigest()
    assert (done.metrics, done.lease_token) == ({"loss": 0.5}, "lease")
    assert client.failed == [] and executor.shut
    (spec,) = executor.specs
    assert executor.scripts == [SCRIPT]  # its inputs were laid out
    assert not spec.workdir.exists()  # and its folders removed afterwards


async def test_a_scripts_failure_is_reported_as_the_users_not_the_nodes(tmp_path: Path) -> None:
    def crash(spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        return RunResult("nonzero_exit", "train.py exited with status 1", 1, "Traceback...", 0.1)

    client = FakeClient([_task()])
    await asyncio.wait_for(_worker(tmp_path, client, FakeExecutor(crash), once=True).run(), 10)
    (failed,) = client.failed
    assert (failed.kind, failed.code, failed.stderr_tail) == (
        "user_error",
        "nonzero_exit",
        "Traceback...",
    )
    assert client.completed == [] and client.uploaded == []


async def test_a_stop_mid_task_hands_the_task_back(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def slow(spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        started.set()
        await cancel.wait()  # as a real executor kills its run
        return RunResult("cancelled", "stopped on request", None, "", 0.2)

    client = FakeClient([_task()])
    worker = _worker(tmp_path, client, FakeExecutor(slow), once=False)
    running = asyncio.ensure_future(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    worker.request_stop()
    await asyncio.wait_for(running, 10)
    (released,) = client.failed
    assert (released.kind, released.code) == ("released", "released")


async def test_the_coordinators_cancel_stops_the_task_and_reports_nothing(tmp_path: Path) -> None:
    client = FakeClient([_task()])

    async def until_cancelled(spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        client.cancel = ["t1"]  # the job was cancelled: the next heartbeat says so
        await asyncio.wait_for(cancel.wait(), 5)
        return RunResult("cancelled", "stopped on request", None, "", 0.2)

    worker = _worker(tmp_path, client, FakeExecutor(until_cancelled), once=True)
    await asyncio.wait_for(worker.run(), 10)
    assert client.failed == [] and client.completed == []  # the coordinator settled it


async def test_an_outage_is_ridden_out_and_the_next_task_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gridx.node.outage.Outage.failed", lambda self, what, exc: 0.0)
    down = TransportError("request_task", ConnectionRefusedError("refused"), retriable=True)
    client = FakeClient([down, down, _task()])
    await asyncio.wait_for(_worker(tmp_path, client, FakeExecutor(_weights), once=True).run(), 10)
    assert [c.task_id for c in client.completed] == ["t1"]


async def test_a_task_that_comes_with_a_completion_runs_without_a_poll(tmp_path: Path) -> None:
    client = FakeClient([_task("t1")])
    client.following = {"t1": _task("t2")}
    worker = _worker(tmp_path, client, FakeExecutor(_weights), once=False)
    running = asyncio.ensure_future(worker.run())
    await client.until(lambda: len(client.completed) == 2)
    worker.request_stop()
    await asyncio.wait_for(running, 10)
    assert [(c.task_id, c.next) for c in client.completed] == [("t1", True), ("t2", True)]
    assert client.polls >= 1 and client.failed == []
    assert len(client.uploaded) == 2


async def test_a_task_that_came_with_a_completion_is_handed_back_when_the_owner_paused(
    tmp_path: Path,
) -> None:
    worker: Worker

    def pause_after(spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        (worker.config.state_dir / availability.PAUSED).touch()  # the owner, mid-task
        return _weights(spec, cancel)

    client = FakeClient([_task("t1")])
    client.following = {"t1": _task("t2")}
    worker = _worker(tmp_path, client, FakeExecutor(pause_after), once=False)
    running = asyncio.ensure_future(worker.run())
    await client.until(lambda: bool(client.failed))
    worker.request_stop()
    await asyncio.wait_for(running, 10)
    (released,) = client.failed
    assert (released.task_id, released.kind, released.code) == ("t2", "released", "released")
    assert "paused" in released.message, released.message
    assert [c.task_id for c in client.completed] == ["t1"]  # t2 never ran here

"""The warm runners' book-keeping without sandboxes: fake runners stand in for the processes.
Which runner a task gets, what happens when one dies or will not start, the idle timeout and
the cap on how many stay warm."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gridx.node import memory
from gridx.node.executors.base import RunResult, RunSpec
from gridx.node.executors.warm import Runner, RunnerGone, Runners, WarmKey
from gridx.node.memory import RESERVE_MB, MemoryBudget


class FakeRunner:
    """Runs each task by answering `ok`; `die` makes its next task find it gone."""

    def __init__(self, key: WarmKey, preloaded: tuple[str, ...]) -> None:
        self.key = key
        self.preloaded = preloaded
        self.dead = False
        self.die = False
        self.tasks = 0
        self.used = 0.0
        self.killed = False
        self.memory_mb: int | None = None

    async def run(self, spec: RunSpec, cancel: asyncio.Event) -> RunResult:
        if self.die:
            self.dead = True
            raise RunnerGone("the runner closed its socket")
        self.tasks += 1
        self.used = asyncio.get_running_loop().time()
        return RunResult(None, "ok", 0, "", 0.0)

    async def kill(self) -> None:
        self.killed = True
        self.dead = True


class Starter:
    """Starts fake runners; refuses any preload in `refuse` (as a library that aborts would)."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.refuse_all = False
        self.started: list[FakeRunner] = []
        self.tries = 0

    async def __call__(self, key: WarmKey, spec: RunSpec, preload: tuple[str, ...]) -> Runner:
        if self.refuse_all:
            self.tries += 1
            raise OSError("the sandbox would not start")
        if any(p in self.refuse for p in preload):
            raise RunnerGone(f"{preload} ended the runner")
        runner = FakeRunner(key, preload)
        self.started.append(runner)
        return runner  # type: ignore[return-value]


def _spec(tmp_path: Path) -> RunSpec:
    return RunSpec(
        workdir=tmp_path,
        logdir=tmp_path,
        runtime=None,  # type: ignore[arg-type]
        env={},
        timeout_s=5,
        memory_mb=4096,  # enough for preloads
        max_output_bytes=1 << 20,
    )


def _key(job: str, preload: tuple[str, ...] = ()) -> WarmKey:
    return WarmKey(job_id=job, runtime="r", gpu=False, preload=preload)


async def test_a_jobs_tasks_share_one_runner_and_other_jobs_get_their_own(tmp_path: Path) -> None:
    start = Starter()
    runners = Runners(start, idle_s=60)
    for job in ("a", "a", "b"):
        result = await runners.run(_key(job), _spec(tmp_path), asyncio.Event())
        assert result is not None and result.ok
    assert [(r.key.job_id, r.tasks) for r in start.started] == [("a", 2), ("b", 1)]
    await runners.close_all()
    assert all(r.killed for r in start.started)


async def test_a_runner_that_died_is_replaced_once_for_the_task(tmp_path: Path) -> None:
    start = Starter()
    runners = Runners(start, idle_s=60)
    await runners.run(_key("a"), _spec(tmp_path), asyncio.Event())
    start.started[0].die = True
    result = await runners.run(_key("a"), _spec(tmp_path), asyncio.Event())
    assert result is not None and result.ok
    assert len(start.started) == 2 and start.started[1].tasks == 1
    await runners.close_all()


async def test_a_preload_that_ends_the_runner_is_dropped_and_a_runner_that_never_starts_is_cold(
    tmp_path: Path,
) -> None:
    start = Starter(refuse=("torch",))
    runners = Runners(start, idle_s=60)
    result = await runners.run(_key("a", ("torch",)), _spec(tmp_path), asyncio.Event())
    assert result is not None and start.started[0].preloaded == ()  # warm, without the preload
    await runners.close_all()

    never = Starter(refuse=("torch",))
    never.refuse_all = True
    cold = Runners(never, idle_s=60)
    for _ in range(2):  # tried once: the job's tasks then start cold, without asking again
        assert await cold.run(_key("b"), _spec(tmp_path), asyncio.Event()) is None
    assert _key("b") in cold.cold and never.tries == 1


async def test_an_idle_runner_is_closed_and_the_cap_evicts_the_least_recent(
    tmp_path: Path,
) -> None:
    start = Starter()
    runners = Runners(start, idle_s=0.05, limit=2)
    for job in ("a", "b", "c"):  # the third evicts the least recently used
        await runners.run(_key(job), _spec(tmp_path), asyncio.Event())
    assert [r.killed for r in start.started] == [True, False, False]
    await asyncio.sleep(0.2)  # idle past idle_s
    assert runners.warm == {} and all(r.killed for r in start.started)
    await runners.close_all()


class Machine:
    """A machine's memory as the kernel would report it: runners take theirs while they live."""

    def __init__(self, total: int, free: int, runner_mb: int) -> None:
        self.total, self.free, self.runner_mb = total, free, runner_mb
        self.started = 0

    def meminfo(self) -> tuple[int, int]:
        return self.total, self.free

    async def start(self, key: WarmKey, spec: RunSpec, preload: tuple[str, ...]) -> Runner:
        self.started += 1
        self.free -= self.runner_mb
        runner = FakeRunner(key, preload)
        runner.memory_mb = self.runner_mb
        machine = self

        async def kill() -> None:
            if not runner.dead:
                machine.free += machine.runner_mb
            runner.killed = runner.dead = True

        runner.kill = kill  # type: ignore[method-assign]
        return runner  # type: ignore[return-value]


async def _task(runners: Runners, budget: MemoryBudget, job: str, tmp_path: Path) -> bool:
    """One task of `job`, 400 MB at its peak; whether it ran warm."""
    spec = _spec(tmp_path)
    spec.memory_mb = budget.task_mb
    warm = await runners.run(_key(job), spec, asyncio.Event()) is not None
    budget.ran(job, 400)
    return warm


async def test_a_runner_starts_only_where_it_fits_beside_its_task_as_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1 GB Pi: the task's cap is what was free; a 640 MB runner never fits beside a 400 MB
    task, measured once (it is not started again). 4 GB: the first task, of a size not seen yet,
    goes cold; once measured, runners are warm. 24 GB: warm from the first task."""
    cases = ((1000, 900, [False] * 3, 1), (4000, 3800, [False, True, True], 2),
             (24000, 20000, [True] * 3, 1))  # fmt: skip
    for total, free, warm, starts in cases:
        machine = Machine(total, free, runner_mb=640)
        monkeypatch.setattr(memory, "meminfo_mb", machine.meminfo)
        budget = MemoryBudget.measure(cap_mb=4096)
        assert budget.task_mb == min(4096, free - RESERVE_MB)
        runners = Runners(machine.start, idle_s=60, budget=budget)
        assert [await _task(runners, budget, "a", tmp_path) for _ in range(3)] == warm, total
        assert machine.started == starts, total
        if not any(warm):
            assert budget.warm_note.startswith(
                "off for job a: its runner (640 MB) beside a "
                "task (400 MB, its last task here) needs 1,040 MB"
            )
        else:
            assert budget.warm_note.startswith("on for job a"), budget.warm_note
        await runners.close_all()
        assert machine.free == free  # every runner's memory given back


def test_a_task_is_capped_at_what_was_free_and_never_below_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "meminfo_mb", lambda: (900, 300))
    assert MemoryBudget.measure(cap_mb=4096).task_mb == memory.MIN_TASK_MB
    monkeypatch.setattr(memory, "meminfo_mb", lambda: (16000, 12000))
    assert MemoryBudget.measure(cap_mb=2048).task_mb == 2048


def test_this_machines_memory_is_read() -> None:
    total, free = memory.meminfo_mb()
    assert 0 < free <= total

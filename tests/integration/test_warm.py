"""Warm runners under a real bubblewrap sandbox: one runner per job, a fresh child per task that
behaves as `python train.py` would, and a whole job bit-identical warm and cold.

(What a hostile task can reach of its runner or of the task before it is attacked in
tests/security/test_hostile_jobs.py.)"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path

import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from gridx.node import sandbox
from gridx.node.executors.base import RunResult, RunSpec, Warm
from gridx.node.executors.process import ProcessExecutor
from gridx.node.memory import MemoryBudget
from tests.integration.conftest import REPO, gridx

DIGITS = REPO / "examples" / "digits"


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[ProcessExecutor]:
    if sandbox.detect() != "bubblewrap":
        pytest.fail("warm runners need bubblewrap: run the suite through infra/test_env.sh")
    yield ProcessExecutor(tmp_path / "state", sys.executable, "warm-test")


def play(executor: ProcessExecutor, scenario: Coroutine[None, None, None]) -> None:
    """Run a scenario, then end its runners in the same event loop."""

    async def whole() -> None:
        try:
            await scenario
        finally:
            await executor.shutdown()

    asyncio.run(whole())


class Tasks:
    """Runs scripts as tasks of a job, the way the worker lays them out."""

    def __init__(self, ex: ProcessExecutor) -> None:
        self.ex = ex
        self.count = 0

    async def run(
        self,
        script: str,
        job: str = "job-a",
        timeout_s: float = 60,
        warm: bool = True,
        memory_mb: int = 4096,
        **kw: object,
    ) -> tuple[RunResult, str, dict[str, str]]:
        self.count += 1
        folder = self.ex.state_dir / "tasks" / job
        work = folder / f"task-{self.count}"
        logs = self.ex.state_dir / "logs" / f"task-{self.count}"
        work.mkdir(parents=True)
        (work / "train.py").write_text(script)
        env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "GRIDX_OUTPUT": str(work / "model.pth")}
        spec = RunSpec(
            workdir=work,
            logdir=logs,
            runtime=sys.executable,
            env=env,
            timeout_s=timeout_s,
            memory_mb=memory_mb,
            max_output_bytes=1 << 30,
            warm=Warm(job, folder, ("json", "numpy")) if warm else None,
            **kw,  # type: ignore[arg-type]
        )
        result = await self.ex.run(spec, asyncio.Event())
        stdout = (logs / "stdout.log").read_text()
        files = {p.name: p.read_text() for p in work.iterdir() if p.name != "train.py"}
        shutil.rmtree(work)
        return result, stdout, files


WRITES = 'open("model.pth", "w").write("weights")\n'


def test_tasks_of_a_job_share_one_runner_and_behave_as_a_fresh_interpreter(
    executor: ProcessExecutor,
) -> None:
    tasks = Tasks(executor)

    async def scenario() -> None:
        # module state, the environment, unseeded numpy: each task starts as a fresh one would
        probe = (
            "import json, os, sys, atexit, numpy\n"
            "print(getattr(json, 'LEFT', None), os.environ.get('LEFT'), sys.argv, __name__,\n"
            "      os.getcwd() == os.path.dirname(__file__), numpy.random.randint(1 << 30))\n"
            "json.LEFT = os.environ['LEFT'] = 'x'\n"
            "f = open('unclosed.txt', 'w'); f.write('flushed at exit')\n"
            "DONE = 'ran'  # a handler may use the script's globals: they outlive it\n"
            "atexit.register(lambda: open('atexit.txt', 'w').write(DONE))\n" + WRITES
        )
        seen = []
        for _ in range(3):
            result, out, files = await tasks.run(probe)
            assert result.ok, result
            seen.append(out.split())
            # what the script left open is flushed, its atexit handlers ran, as at exit
            assert files == {
                "model.pth": "weights",
                "unclosed.txt": "flushed at exit",
                "atexit.txt": "ran",
            }
        runner = next(iter(executor.runners.warm.values()))
        assert runner.tasks == 3 and set(runner.preloaded) == {"json", "numpy"}
        for words in seen:
            assert words[:5] == ["None", "None", "['train.py']", "__main__", "True"]
        assert len({words[5] for words in seen}) == 3  # numpy reseeded per task, as cold

        # exits and errors read as they would from `python train.py`
        result, _, _ = await tasks.run("import sys\nsys.exit(3)\n")
        assert (result.code, result.exit_code) == ("nonzero_exit", 3)
        result, _, _ = await tasks.run("def f():\n    raise ValueError('bad row 7')\nf()\n")
        assert (result.code, result.exit_code) == ("nonzero_exit", 1)
        assert result.stderr_tail.startswith('Traceback (most recent call last):\n  File "/')
        assert "runpy" not in result.stderr_tail and "ValueError: bad row 7" in result.stderr_tail
        result, _, _ = await tasks.run("print('no model')\n")
        assert result.code == "missing_output"
        assert runner.tasks == 6 and not runner.dead  # failures do not cost the runner

    play(executor, scenario())


def test_a_stopped_task_takes_its_runner_and_the_next_task_gets_a_fresh_one(
    executor: ProcessExecutor,
) -> None:
    tasks = Tasks(executor)

    async def scenario() -> None:
        result, _, _ = await tasks.run(WRITES)
        first = next(iter(executor.runners.warm.values()))
        result, _, _ = await tasks.run("while True:\n    pass\n", timeout_s=1)
        assert result.code == "timeout" and first.dead
        result, _, _ = await tasks.run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n")
        assert result.code == "runner_ended" and "not out of memory" in result.message
        result, _, _ = await tasks.run(WRITES)
        assert result.ok
        assert next(iter(executor.runners.warm.values())) is not first
        hog = 'blocks = [b"x" * (64 << 20) for _ in range(64)]\n'  # 4 GiB, touched
        result, _, _ = await tasks.run(hog, job="job-hog", memory_mb=256)
        assert result.code == "out_of_memory" and "256 MiB" in result.message, result

    play(executor, scenario())


def test_jobs_never_share_a_runner_and_idle_runners_end(executor: ProcessExecutor) -> None:
    tasks = Tasks(executor)
    executor.runners.idle_s = 0.5

    async def scenario() -> None:
        for job in ("job-a", "job-b"):
            result, _, _ = await tasks.run(WRITES, job=job)
            assert result.ok
        a, b = (executor.runners.warm[k] for k in executor.runners.warm)
        assert a is not b and {a.key.job_id, b.key.job_id} == {"job-a", "job-b"}
        result, _, _ = await tasks.run(WRITES, job="job-c")  # over the limit: job-a's goes
        assert a.dead and {k.job_id for k in executor.runners.warm} == {"job-b", "job-c"}
        await asyncio.sleep(1.5)
        assert executor.runners.warm == {}
        result, _, _ = await tasks.run(WRITES, warm=False)  # a job that asked for cold starts
        assert result.ok and executor.runners.warm == {}

    play(executor, scenario())


def test_a_seeded_job_gives_the_same_model_warm_and_cold(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.add_node("node-1", args=("--executor", "process"))
    models = {}
    for mode in ("--warm", "--no-warm"):
        out = gridx(
            cluster, "job", "submit", str(DIGITS / "train.py"),
            "--requirements", str(DIGITS / "requirements.txt"),
            "--data", str(DIGITS / "data" / "train.csv"),
            "--rounds", "2", "--shards", "2", "--seed", "7", mode,
            "--wait", "--json", "--out", str(tmp_path / mode),
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout)
        models[mode] = Path(result["model"]).read_bytes()
        job_id = result["job"]["id"]
        log = (cluster.root / "node-1.log").read_text()
        assert (f"warm runner for job {job_id}" in log) == (mode == "--warm")
    assert models["--warm"] == models["--no-warm"]


def test_a_tasks_memory_is_measured_warm_and_cold_and_the_budget_learns_it(
    executor: ProcessExecutor,
) -> None:
    """The kernel's count of a task's sandbox (its cgroup's peak), a warm runner's own memory
    taken out: what the node's memory budget decides warm runners by."""
    tasks = Tasks(executor)
    budget = MemoryBudget.measure(cap_mb=4096)
    executor.runners.budget = budget
    hog = "import numpy\nx = numpy.ones(150 << 17)\n" + WRITES  # 150 MB touched

    async def scenario() -> None:
        for warm in (False, True, True):
            result, _, _ = await tasks.run(hog, job="job-mem", warm=warm)
            assert result.ok, result
            assert result.peak_mb is not None and 150 <= result.peak_mb < 400, (warm, result)
            budget.ran("job-mem", result.peak_mb)
        runner = next(iter(executor.runners.warm.values()))
        assert runner.memory_mb is not None and runner.memory_mb > 0  # numpy preloaded
        assert budget.runners[runner.key.preload] == runner.memory_mb
        assert budget.warm_note.startswith("on for job job-mem: its runner ("), budget.warm_note
        assert "its last task here" in budget.warm_note

    play(executor, scenario())

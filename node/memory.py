"""The node's memory budget: what a task may use on this machine, and whether a job's warm runner
fits beside its task (on a 1 GB Raspberry Pi a runner that preloaded torch holds 640 MB and a
task about 400 MB: both do not fit, and the node should not find out from the OOM killer).

Measured, not guessed: the machine's memory and what is free come from `/proc/meminfo`; a
runner's size is its sandbox's memory once it has imported its preloads; a task's size is the
peak of its sandbox's memory (its cgroup's `memory.peak`), the last one of its job here.
What is not measured yet is taken at its bound: a task of a job not seen yet may use its cap.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

RESERVE_MB = 160
"""Left to the system and to the node itself (it idles at about 50 MB, more while it uploads)."""
MIN_TASK_MB = 256
"""The least a task is capped at, even where less was free at start (a cap under it helps no
one: the task fails its first import instead of being placed elsewhere)."""


def meminfo_mb() -> tuple[int, int]:
    """(total, available) memory of this machine in MiB, as the kernel counts them."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                fields[name] = int(value.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    total = fields.get("MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    return total, fields.get("MemAvailable", total)


def mib(value: int) -> str:
    return f"{value:,} MB"


@dataclass
class MemoryBudget:
    """What the node may give tasks, and what it measured of runners and tasks."""

    cap_mb: int
    """The owner's cap on a task (`--memory-mb`)."""
    total_mb: int
    free_at_start_mb: int
    runners: dict[tuple[str, ...], int] = field(default_factory=dict)
    """A runner's memory once started, by what it preloads."""
    tasks: dict[str, int] = field(default_factory=dict)
    """The peak memory of a job's last task here, by job (its sandbox's, runner excluded)."""
    warm_note: str = ""
    """The last decision about a warm runner, in words (the status page shows it)."""

    @classmethod
    def measure(cls, cap_mb: int) -> MemoryBudget:
        total, available = meminfo_mb()
        return cls(cap_mb=cap_mb, total_mb=total, free_at_start_mb=available)

    @property
    def task_mb(self) -> int:
        """The memory a task may use here (advertised, and each task's cap): the owner's cap
        within what was free when the node started, less `RESERVE_MB`."""
        return max(MIN_TASK_MB, min(self.cap_mb, self.free_at_start_mb - RESERVE_MB))

    def _need(
        self, job_id: str, preload: tuple[str, ...], runner_mb: int | None
    ) -> tuple[int, int]:
        runner = runner_mb if runner_mb is not None else self.runners.get(preload, 0)
        return runner, self.tasks.get(job_id, self.task_mb)

    def warm_refusal(
        self, job_id: str, preload: tuple[str, ...], runner_mb: int | None = None
    ) -> str | None:
        """Why a runner for `job_id` should not be (or stay) warm now, or None where it fits:
        its memory (`runner_mb` measured now, else as last measured, else not counted yet)
        beside the job's task must be within what is free (a runner already started counts
        itself as not free: pass it as `runner_mb` and it is not counted twice)."""
        runner = runner_mb if runner_mb is not None else self.runners.get(preload, 0)
        task = self.tasks.get(job_id, self.task_mb)
        free = meminfo_mb()[1] - RESERVE_MB + (runner_mb or 0)
        seen = "its last task here" if job_id in self.tasks else "the task cap"
        if runner + task <= free:
            self.warm_note = (
                f"on for job {job_id}: its runner ({mib(runner)}) beside a task ({mib(task)}, "
                f"{seen}) fits in {mib(free)} free"
            )
            return None
        self.warm_note = (
            f"off for job {job_id}: its runner ({mib(runner)}) beside a task ({mib(task)}, "
            f"{seen}) needs {mib(runner + task)}, {mib(free)} free; its tasks start cold"
        )
        return self.warm_note

    def ran(self, job_id: str, peak_mb: int | None) -> None:
        """A task of `job_id` peaked at `peak_mb` (a warm runner's own memory excluded; None:
        not measured)."""
        if peak_mb:
            self.tasks[job_id] = peak_mb

"""The environment a task's script runs with: the train.py (or evaluate.py) contract, nothing
of the node's own."""

from __future__ import annotations

from pathlib import Path

from gridx.schemas.agent import TaskAssignment


def task_env(task: TaskAssignment, workdir: Path, threads: int) -> dict[str, str]:
    """The task's environment: the train.py (or evaluate.py) contract, nothing of ours."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        "GRIDX_JOB_ID": task.job_id,
        "GRIDX_TASK_ID": task.task_id,
        "GRIDX_ROUND": str(task.round),
        "GRIDX_ROUNDS": str(task.rounds),
        "GRIDX_EPOCHS": str(task.epochs),
        "GRIDX_SHARD": str(task.shard),
        "GRIDX_NUM_SHARDS": str(task.num_shards),
        "GRIDX_SEED": str(task.seed),
        "GRIDX_METRICS": str(workdir / "metrics.json"),
        "GRIDX_STRATEGY": task.strategy,
    }
    if task.prox_mu is not None:
        env["GRIDX_PROX_MU"] = repr(task.prox_mu)
    if task.round < 0:  # the job's initialisation step: make the starting model
        env["GRIDX_INIT"] = "1"
    if task.kind == "evaluate":
        env["GRIDX_EVAL"] = "1"
    else:
        env["GRIDX_OUTPUT"] = str(workdir / "model.pth")
    return env

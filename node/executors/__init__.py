"""Executors run a task's script in a sandbox: `process` (a sandboxed subprocess) and
`docker` (a locked-down container), both behind the contract in `base.py`; `make_executor`
picks one."""

from __future__ import annotations

import logging
from pathlib import Path

from gridx.node.errors import ExecutorUnavailable
from gridx.node.executors.base import Executor
from gridx.node.executors.process import ProcessExecutor
from gridx.node.executors.warm import IDLE_S
from gridx.node.memory import MemoryBudget

log = logging.getLogger("gridx.node")


def make_executor(
    kind: str,
    state_dir: Path,
    python: str,
    node_id: str,
    isolation: str = "auto",
    image: str = "",
    warm_idle_s: float = IDLE_S,
    budget: MemoryBudget | None = None,
) -> Executor:
    """`auto` (docker when an engine answers and has the executor image, else process),
    `docker` or `process` (under `isolation`: `auto` for the strongest that works); `budget`
    decides where a warm runner fits.

    Raises:
        ExecutorUnavailable: `docker` asked for and no engine answers, or its image is missing.
    """
    if kind in ("auto", "docker"):
        from gridx.node.executors.docker import DockerExecutor, docker_available

        if docker_available():
            try:
                return DockerExecutor(
                    node_id=node_id, image=image or None, warm_idle_s=warm_idle_s, budget=budget
                )
            except ExecutorUnavailable as exc:
                if kind == "docker":
                    raise
                log.warning("not using Docker: %s", exc)
        elif kind == "docker":
            raise ExecutorUnavailable(
                "--executor docker: no Docker engine answers (is dockerd running? DOCKER_HOST?)"
            )
    return ProcessExecutor(
        state_dir, python, node_id, None if isolation == "auto" else isolation, warm_idle_s, budget
    )

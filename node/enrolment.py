"""Who this node is to the coordinator: what it offers (`capabilities`), and its identity,
registered once with the owner's enrolment key (`enrol`)."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from gridx.node import __version__
from gridx.node.client import CoordinatorClient
from gridx.node.config import NodeConfig
from gridx.node.errors import CoordinatorError, NotEnrolled, TransportError, Unreachable
from gridx.node.executors.base import Executor
from gridx.node.memory import MemoryBudget
from gridx.node.selftest import SandboxReport
from gridx.node.state import Identity, load_identity, save_identity
from gridx.schemas.agent import Capabilities, RegisterRequest

log = logging.getLogger("gridx.node")


def cuda_gpus() -> int:
    """How many NVIDIA GPUs `nvidia-smi -L` lists (0 without the driver)."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def capabilities(executor: Executor, report: SandboxReport, budget: MemoryBudget) -> Capabilities:
    """What this machine offers, given the executor it runs tasks with, what its sandbox
    self-test measured and the memory it may give a task."""
    return Capabilities(
        arch=platform.machine(),
        cpus=os.cpu_count() or 1,
        memory_mb=budget.task_mb,
        machine_memory_mb=budget.total_mb,
        executors=sorted({"process", executor.name}),
        isolation=executor.isolation,  # type: ignore[arg-type]
        sandbox=report.level,  # type: ignore[arg-type]
        sandbox_gaps=report.gaps,
        docker=executor.name == "docker",
        gpus=cuda_gpus(),
        version=__version__,
        frameworks=executor.frameworks(),
    )


def _enrolment_key(config: NodeConfig) -> str:
    """The credential to register with: the file's (or standard input's) first line, else the
    setting.

    Raises:
        NotEnrolled: the file cannot be read.
    """
    source = config.enrolment_key_file
    if not source:
        return config.enrolment_key.strip()
    try:
        text = sys.stdin.readline() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise NotEnrolled(f"cannot read the enrolment key file {source}: {exc.strerror}") from exc
    return (text.strip().splitlines() or [""])[0].strip()


async def enrol(config: NodeConfig, client: CoordinatorClient, caps: Capabilities) -> Identity:
    """The saved identity, or a new one from registering with the enrolment key."""
    ident = load_identity(config.state_dir, config.coordinator_url)
    if ident is not None:
        return ident
    key = _enrolment_key(config)
    if not key:
        raise NotEnrolled(
            "this node is not registered yet: make a token with `gridx node token create`, "
            "save it to a file and pass --enrolment-key-file FILE (or set GRIDX_ENROLMENT_KEY)"
        )
    request = RegisterRequest(
        name=config.name or platform.node() or "node",
        owner_email=config.owner_email or None,
        capabilities=caps,
    )
    try:
        resp = await client.register(key, request)
    except CoordinatorError as exc:
        if exc.status in (401, 403):
            hint = "GRIDX_OWNER_EMAIL" if exc.status == 403 else "GRIDX_ENROLMENT_KEY"
            raise NotEnrolled(f"registration refused: {exc.message} (check {hint})") from exc
        raise
    except TransportError as exc:
        raise Unreachable(
            f"no coordinator answers at {config.coordinator_url} ({exc}); check --coordinator / "
            "GRIDX_COORDINATOR_URL"
        ) from exc
    ident = Identity(
        coordinator_url=config.coordinator_url, node_id=resp.node_id, node_token=resp.node_token
    )
    save_identity(config.state_dir, ident)
    log.info("registered as %s", ident.node_id)
    if resp.warning:
        log.warning("%s", resp.warning)
    return ident

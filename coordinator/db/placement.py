"""The placement rule (`schemas/placement.py`) in SQL: the jobs table's placement columns, and
the condition a claim puts on them for the claiming node's capabilities."""

from __future__ import annotations

from gridx.schemas.agent import SANDBOX_LEVELS, Capabilities
from gridx.schemas.placement import Placement

MATCHES = """(j.require_docker = 0 OR :docker = 1) AND j.min_sandbox <= :sandbox
    AND (j.require_gpu = 0 OR :gpus > 0)
    AND j.min_cpus <= :cpus AND j.min_memory_mb <= :memory_mb
    AND (j.arch IS NULL OR j.arch = :arch)"""
"""True for a job `j` whose placement allows a node with these parameters (`node_params`)."""


def columns(placement: Placement) -> dict[str, object]:
    """A job's placement as the values of its columns."""
    return {
        "require_docker": int(placement.require_docker),
        "min_sandbox": SANDBOX_LEVELS.index(placement.min_sandbox),
        "require_gpu": int(placement.require_gpu),
        "min_cpus": placement.min_cpus,
        "min_memory_mb": placement.min_memory_mb,
        "arch": placement.arch,
    }


def node_params(caps: Capabilities) -> dict[str, object]:
    """A node's capabilities as the parameters of `MATCHES`."""
    return {
        "docker": int(caps.docker),
        "sandbox": SANDBOX_LEVELS.index(caps.sandbox),
        "gpus": caps.gpus,
        "cpus": caps.cpus,
        "memory_mb": caps.memory_mb,
        "arch": caps.arch,
    }

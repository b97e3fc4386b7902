"""Which nodes may run a job's tasks: one rule, stated once.

A job's config carries it (`JobConfig.placement`); the coordinator stores it in the jobs
table's columns, where the claim's SQL matches it against the node's capabilities
(`coordinator/db/placement.py`), and checks it in Python where no claim runs (placing a round on
the nodes that hold a dataset). `tests/unit/test_placement.py` holds the two equal on generated
jobs and nodes; a new requirement is a field here, its line in `allows`, and its column there.
"""

from __future__ import annotations

import msgspec

from gridx.schemas.agent import SANDBOX_LEVELS, Capabilities, SandboxLevel


class Placement(msgspec.Struct, kw_only=True, frozen=True):
    """A job's requirements of the nodes it runs on."""

    require_docker: bool = False
    min_sandbox: SandboxLevel = "none"
    require_gpu: bool = False
    min_cpus: int = 0
    min_memory_mb: int = 0
    arch: str | None = None

    def allows(self, caps: Capabilities) -> bool:
        """Whether a node with `caps` may run the job's tasks."""
        return (
            (caps.docker or not self.require_docker)
            and SANDBOX_LEVELS.index(caps.sandbox) >= SANDBOX_LEVELS.index(self.min_sandbox)
            and (caps.gpus > 0 or not self.require_gpu)
            and caps.cpus >= self.min_cpus
            and caps.memory_mb >= self.min_memory_mb
            and (self.arch is None or caps.arch == self.arch)
        )

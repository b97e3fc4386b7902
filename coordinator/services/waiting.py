"""Why a job's work waits, in words: a queued task never sits there silently (Ray shows a
pending task's reason the same way). Judged from the fleet as the coordinator sees it now."""

from __future__ import annotations

from gridx.coordinator.db import datasets, nodes
from gridx.coordinator.db.jobs import JobRow
from gridx.coordinator.db.tasks import TaskRow
from gridx.coordinator.services.nodes import node_info
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.agent import SANDBOX_LEVELS
from gridx.schemas.jobs import JobConfig
from gridx.schemas.nodes import NodeInfo

UP = ("online", "resting")


def unmet(config: JobConfig, node: NodeInfo) -> str | None:
    """The first thing `node` lacks that the job asks for (None: it may run the job's tasks)."""
    caps = node.capabilities
    if SANDBOX_LEVELS.index(caps.sandbox) < SANDBOX_LEVELS.index(config.min_sandbox):
        return f"a {config.min_sandbox} sandbox"
    if config.require_docker and not caps.docker:
        return "Docker"
    if config.require_gpu and caps.gpus == 0:
        return "a GPU"
    if config.arch is not None and caps.arch != config.arch:
        return f"the {config.arch} architecture"
    if caps.cpus < config.min_cpus:
        return f"{config.min_cpus} CPUs"
    if caps.memory_mb < config.min_memory_mb:
        return f"{config.min_memory_mb} MB of memory"
    return None


def explain(config: JobConfig, fleet: list[NodeInfo], holders: set[str] | None) -> str:
    """Why queued work is not running, from the nodes there are (`holders`: the nodes that hold
    a local-data job's dataset and let its owner use it)."""
    up = [n for n in fleet if n.status in UP]
    if not up:
        return "no node is online: start one (`gridx-node start`), or wait for the fleet"
    if holders is not None:
        up = [n for n in up if n.id in holders]
        if not up:
            return (
                f"no online node holds dataset {config.dataset!r} for you: its holders add it "
                f"with `gridx-node dataset add {config.dataset} PATH --allow YOUR_EMAIL`"
            )
    lacking = [(n, unmet(config, n)) for n in up]
    able = [n for n, why in lacking if why is None]
    if not able:
        needs = sorted({why for _, why in lacking if why})
        return f"none of the {len(up)} online nodes has what the job asks: {', '.join(needs)}"
    working = [n for n in able if n.status == "online"]
    if not working:
        said = "; ".join(f"{n.name}: {n.resting}" for n in able[:3])
        return f"the {len(able)} node(s) able to run it take no task now ({said})"
    if holders is not None and len(working) < config.min_nodes:
        return f"waiting for {config.min_nodes} holders online (--min-nodes); {len(working)} now"
    return f"waiting for one of the {len(working)} able node(s) to take it (they may be busy)"


async def why(rt: Runtime, row: JobRow, config: JobConfig, tasks: list[TaskRow]) -> str | None:
    """Why the job waits now (None: it does not: nothing queued, or it ended)."""
    if row.status not in ("queued", "running"):
        return None
    waits = any(t.status == "queued" for t in tasks)
    placed = any(t.round_idx == row.current_round for t in tasks)
    if not waits and not (config.dataset and not placed):
        return None
    fleet = [node_info(rt, r) for r in await nodes.list_nodes(rt.db.reader, None)]
    holders = None
    if config.dataset:
        alive = rt.clock.now_ms() - int(rt.settings.node_offline_s * 1000)
        found = await datasets.holders(rt.db.reader, row.id, alive, rt.settings.min_reputation)
        holders = {h.node_id for h in found}
    return explain(config, fleet, holders)

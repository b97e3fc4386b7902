"""Adaptive replication (`replicas: adaptive`, after BOINC's): check a result on a second node
only while its node has not earned trust, then now and then.

A node's trust is its streak: the checked results it agreed on in a row since it was last
outvoted (`nodes.streak`). When a result comes in (`after_result`, in its completion's
transaction), it is checked (a copy of its shard queued for a node of another owner) with
probability `check_probability(streak, outvoted)`: always while the streak is short of
`TRUST_STREAK` doubled for each time the node was ever outvoted, then 1 / streak. The draw is
seeded by the job's seed and the task, so a run can be replayed. The vote (`voting.vote`)
accepts an unchecked result as `trusted`; two copies that disagree get a third to break the tie.

What an outvoted node's other results become: its unchecked results in rounds not merged yet are
checked before their round merges (`voting`); rounds already merged stay merged (the model
went on from them; re-merging would mean retraining every round since), so what can slip through
is bounded by the check probability of a trusted node.
"""

from __future__ import annotations

import random

from gridx.coordinator.db import events, nodes, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.tasks import TaskRow
from gridx.schemas.jobs import JobConfig

TRUST_STREAK = 10
"""Checked results a new node agrees on in a row before it is trusted (BOINC's default)."""
MAX_DOUBLINGS = 10
"""The streak a node needs doubles each time it is outvoted, up to 2 ** this."""


def check_probability(streak: int, outvoted: int) -> float:
    """How likely a node's next result is checked: 1 until its streak reaches `TRUST_STREAK`
    x 2 ** times it was outvoted, then 1 / streak."""
    needed = TRUST_STREAK * 2 ** min(outvoted, MAX_DOUBLINGS)
    return 1.0 if streak < needed else 1.0 / streak


def suspected(streak: int, outvoted: int) -> bool:
    """A node outvoted since it last earned trust: its results are checked every time, and
    replicated jobs' tasks reach it only after trusted nodes had their pick."""
    return outvoted > 0 and check_probability(streak, outvoted) >= 1.0


async def reconsider(conn: Conn, node_ids: list[str]) -> list[str]:
    """After votes were counted (same transaction): mark each node suspect or not from its
    record; returns the nodes whose mark changed (their cached records are stale)."""
    changed = []
    for t in await nodes.trust(conn, node_ids):
        now_suspect = suspected(t.streak, t.disagreed)
        if now_suspect != bool(t.suspect):
            await nodes.set_suspect(conn, t.id, now_suspect)
            changed.append(t.id)
    return changed


def drawn(config: JobConfig, task_id: str, probability: float) -> bool:
    """The task's one draw against `probability` (replayable: seeded by job seed and task)."""
    return probability >= 1.0 or random.Random(f"{config.seed}:{task_id}").random() < probability


async def after_result(conn: Conn, config: JobConfig, done: TaskRow, node_id: str, now: int) -> int:
    """A result of an adaptively replicated job came in (same transaction, before its round is
    checked for completion): queue its check if its node's trust calls for one.

    Returns:
        How many tasks became ready (0 or 1).
    """
    if not config.adaptive or done.copy != 0:
        return 0  # checks and tie-breakers are not checked again
    node = await nodes.by_id(conn, node_id)
    if node is None:
        return 0
    probability = check_probability(node.streak, node.disagreed)
    checked = drawn(config, done.id, probability)
    payload = {"task": done.id, "node": node_id, "streak": node.streak, "p": probability}
    await events.append(
        conn, done.job_id, "result_checked" if checked else "result_trusted", payload, now
    )
    if not checked:
        return 0
    await tasks.insert_round(
        conn,
        job_id=done.job_id,
        round_idx=done.round_idx,
        shards=config.shards,
        slots=[done.shard + config.shards],
        max_attempts=config.max_attempts,
        max_losses=config.max_node_losses,
        now=now,
    )
    return 1

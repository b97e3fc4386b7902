"""Jobs on data that never leaves its nodes: what nodes declare they hold, and placing each
round's tasks on the nodes that hold the job's dataset.

A round of such a job gets one task per eligible node, bound to that node, weighted by the rows
the node declared (capped by the job's `max_weight`, else by `default_weight_cap`). Eligible:
heard from recently, not draining, of good standing, meeting the job's placement, a node of the
job's owner or of an owner the job names in `holders`, holding a dataset of that name whose
owner lets the job's owner use it, with the job's columns (in any order: the node reorders its
table by name). A round that finds fewer than `min_nodes` waits, placed again by the sweeper
(`place_waiting`) until enough are there; the claim re-checks dataset and permission.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import msgspec

from gridx.coordinator.db import datasets, events, jobs, rounds, tasks
from gridx.coordinator.db.connection import Conn
from gridx.coordinator.db.datasets import DatasetRow, Holder
from gridx.coordinator.services import privacy
from gridx.coordinator.services.lifecycle import fail_job
from gridx.coordinator.services.runtime import Runtime
from gridx.schemas.agent import DatasetInfo
from gridx.schemas.jobs import INIT_ROUND, JobConfig
from gridx.schemas.nodes import DatasetSummary

_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Fleet:
    """Which nodes count as present when a round is placed."""

    alive_ms: int
    """Heard from within this many milliseconds."""
    min_reputation: float

    @classmethod
    def of(cls, rt: Runtime) -> Fleet:
        """The coordinator's settings for it."""
        s = rt.settings
        return cls(alive_ms=int(s.node_offline_s * 1000), min_reputation=s.min_reputation)


def _columns_problem(want: list[str], have: list[str]) -> str | None:
    """Why a node's columns cannot stand for the job's (None: the same set, any order)."""
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if not missing and not extra:
        return None
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"extra {', '.join(extra)}"] if extra else []
    )
    return "its columns differ from the job's: " + "; ".join(parts)


def common_columns(tables: list[list[str]]) -> list[str]:
    """The columns a job on these tables uses: of the most common column set, its most common
    order (ties: the first given)."""
    sets = collections.Counter(frozenset(c) for c in tables)
    best = max(sets.values())
    orders = collections.Counter(tuple(c) for c in tables if sets[frozenset(c)] == best)
    return list(orders.most_common(1)[0][0])


def _matching(found: list[Holder], want: list[str]) -> tuple[list[Holder], list[dict[str, str]]]:
    """The nodes whose columns are the job's (any order), and why each other one is not."""
    chosen: list[Holder] = []
    skipped: list[dict[str, str]] = []
    for h in found:
        problem = _columns_problem(want, h.columns)
        if problem is None:
            chosen.append(h)
        else:
            skipped.append({"node": h.node_id, "reason": problem})
    return chosen, skipped


async def _eligible(
    conn: Conn, job_id: str, config: JobConfig, now: int, fleet: Fleet
) -> list[datasets.Holder]:
    """The live holders of the job's dataset that may join: its owner's nodes and those of the
    owners it names in `holders` (a node's word that it holds a dataset of that name admits
    no one else), meeting the job's placement."""
    found = await datasets.holders(conn, job_id, now - fleet.alive_ms, fleet.min_reputation)
    job = await jobs.get(conn, job_id)
    owner = job.owner_id if job is not None else None
    accepted = {e.strip().lower() for e in config.holders}
    return [
        h
        for h in found
        if (h.owner_id == owner or h.owner_email.lower() in accepted)
        and config.placement.allows(h.capabilities)
    ]


async def place(
    conn: Conn,
    job_id: str,
    config: JobConfig,
    idx: int,
    now: int,
    fleet: Fleet,
    announce: bool = False,
) -> int:
    """Bind round `idx`'s tasks to the nodes that hold the job's dataset (same transaction as
    the round's row); returns how many became ready (0: too few nodes, the round waits, said
    in a `waiting_for_nodes` event when `announce`)."""
    found = await _eligible(conn, job_id, config, now, fleet)
    need = 1 if idx == INIT_ROUND else config.min_nodes
    if len(found) < need:
        if announce:
            payload: dict[str, object] = {"round": idx, "min_nodes": need, "eligible": len(found)}
            await events.append(conn, job_id, "waiting_for_nodes", payload, now)
        return 0
    fixed = await datasets.job_columns(conn, job_id)
    tables = [h.columns for h in found]
    want = msgspec.json.decode(fixed, type=list[str]) if fixed else common_columns(tables)
    chosen, skipped = _matching(found, want)
    if len(chosen) < need:
        if announce:
            payload = {"round": idx, "min_nodes": need, "eligible": len(chosen)}
            payload["skipped"] = skipped
            await events.append(conn, job_id, "waiting_for_nodes", payload, now)
        return 0
    chosen = chosen[: config.max_nodes]
    # delta is 1 / the rows of the first training round (the initialisation step has one node)
    delta = None if idx == INIT_ROUND else privacy.default_delta(config, [h.rows for h in chosen])
    await datasets.fix_columns(conn, job_id, _json.encode(want).decode(), delta)
    if config.dp is not None and idx == 0:
        problem = privacy.budget_problem(config.dp, await datasets.job_delta(conn, job_id))
        if problem is not None:
            await fail_job(conn, job_id, f"privacy budget: {problem}", now)
            return 0
    chosen = chosen[:1] if idx == INIT_ROUND else chosen
    cap = config.max_weight or default_weight_cap([h.rows for h in chosen])
    targets = [(h.node_id, max(1, min(h.rows, cap))) for h in chosen]
    await tasks.insert_round(
        conn,
        job_id=job_id,
        round_idx=idx,
        shards=len(chosen),
        slots=list(range(len(chosen))),
        max_attempts=tasks.INIT_TRIES if idx == INIT_ROUND else config.max_attempts,
        max_losses=config.max_node_losses,
        now=now,
        targets=targets,
    )
    payload = {"round": idx, "nodes": [h.node_id for h in chosen]}
    payload["skipped"] = skipped
    await events.append(conn, job_id, "round_placed", payload, now)
    return len(chosen)


async def place_waiting(rt: Runtime) -> int:
    """One sweep: place the rounds that wait for nodes; returns how many tasks became ready."""
    ready = 0
    fleet = Fleet.of(rt)
    for job_id, idx in await datasets.waiting_rounds(rt.db.reader):
        job = await jobs.get(rt.db.reader, job_id)
        if job is None:
            continue
        config = job.config
        async with rt.db.transaction() as conn:
            await rounds.lock(conn, job_id, idx)  # replicas sweeping at once place it once
            if await datasets.round_has_tasks(conn, job_id, idx):
                continue  # another replica placed it meanwhile
            ready += await place(conn, job_id, config, idx, rt.clock.now_ms(), fleet)
    rt.wakeups.tasks_ready(ready)
    return ready


def declared(datasets_in: list[DatasetInfo]) -> list[DatasetRow]:
    """A heartbeat's datasets as rows for `datasets.replace_for_node` (the node id is set
    there); emails compared in lower case, as users' are."""
    return [
        DatasetRow(
            node_id="",
            name=d.name,
            format=d.format,
            columns=list(d.columns),
            rows=d.rows,
            description=d.description,
            allowed=sorted({e.strip().lower() for e in d.allow_users}),
        )
        for d in datasets_in
    ]


def info(row: DatasetRow) -> DatasetInfo:
    """A stored declaration as the node sent it."""
    return DatasetInfo(
        name=row.name,
        format=row.format,  # type: ignore[arg-type]
        columns=row.columns,
        rows=row.rows,
        description=row.description,
        allow_users=row.allowed,
    )


def summarize(
    rows: list[DatasetRow], online: set[str], usable: set[tuple[str, str]]
) -> list[DatasetSummary]:
    """`GET /datasets`: each name over the online nodes that hold it; `usable` holds the
    (node, name) pairs the caller may train on."""
    by_name: dict[str, list[DatasetRow]] = {}
    for r in rows:
        if r.node_id in online:
            by_name.setdefault(r.name, []).append(r)
    out = []
    for name in sorted(by_name):
        group = by_name[name]
        columns = common_columns([r.columns for r in group])
        first = next(r for r in group if r.columns == columns)
        out.append(
            DatasetSummary(
                name=name,
                format=first.format,  # type: ignore[arg-type]
                columns=columns,
                rows=sum(r.rows for r in group),
                nodes=len(group),
                usable_nodes=sum((r.node_id, r.name) in usable for r in group),
                description=next((r.description for r in group if r.description), ""),
            )
        )
    return out


def default_weight_cap(declared: list[int]) -> int:
    """The most rows one node may weigh when the job sets no `max_weight`: twice the lower
    median of what the round's nodes declared. A node claiming 2^50 rows beside two honest
    ones of 100 weighs 200, not all (a lone node, whatever it claims, weighs what it says)."""
    ordered = sorted(declared)
    return max(1, 2 * ordered[(len(ordered) - 1) // 2]) if ordered else 1

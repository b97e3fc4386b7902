"""Datasets nodes declared they hold (names, columns, row counts: never the data), who may use
them, and the nodes a job on one may run on."""

from __future__ import annotations

from typing import cast

import msgspec

from gridx.coordinator.db.connection import Conn, Params, fetch_all, fetch_value
from gridx.schemas.agent import Capabilities


class DatasetRow(msgspec.Struct, kw_only=True):
    """One node's declaration of one dataset."""

    node_id: str
    name: str
    format: str
    columns: list[str]
    rows: int
    description: str
    allowed: list[str] = []
    """Who besides the node's owner may use it (emails)."""


class Holder(msgspec.Struct, kw_only=True):
    """A node that holds a dataset a job may use, with what it needs to be placed."""

    node_id: str
    owner_email: str
    owner_id: int
    capabilities: Capabilities
    last_seen: int
    columns: list[str]
    rows: int


DELETE = "DELETE FROM node_datasets WHERE node_id = :node_id"
INSERT = """
INSERT INTO node_datasets (node_id, name, format, columns, rows, description)
VALUES (:node_id, :name, :format, :columns, :rows, :description)
"""
GRANT = "INSERT INTO dataset_grants (node_id, name, email) VALUES (:node_id, :name, :email)"
LIST = """
SELECT node_id, name, format, columns, rows, description FROM node_datasets
ORDER BY node_id, name
"""
GRANTS = "SELECT node_id, name, email FROM dataset_grants ORDER BY email"
# A job's owner may use a node's dataset when they own the node or the node's owner allowed
# them by email; the same test guards claims (`tasks.CLAIM`).
MAY_USE = """(n.owner_id = j.owner_id OR EXISTS (
    SELECT 1 FROM dataset_grants g JOIN users ju ON ju.id = j.owner_id
    WHERE g.node_id = d.node_id AND g.name = d.name AND g.email = ju.email))"""
HOLDERS = f"""
SELECT n.id AS node_id, o.email AS owner_email, n.owner_id, n.capabilities, n.last_seen,
    d.columns, d.rows
FROM node_datasets d JOIN nodes n ON n.id = d.node_id JOIN jobs j ON j.id = :job_id
    JOIN users o ON o.id = n.owner_id
WHERE d.name = j.dataset AND n.draining = 0 AND n.last_seen >= :alive_since AND {MAY_USE}
    AND n.agreed + 1 >= CAST(:min_reputation AS DOUBLE PRECISION) * (n.agreed + n.disagreed + 1)
ORDER BY n.id
"""
WAITING = """
SELECT r.job_id, r.idx FROM rounds r JOIN jobs j ON j.id = r.job_id
WHERE r.status = 'running' AND j.dataset IS NOT NULL AND j.status IN ('queued', 'running')
    AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.job_id = r.job_id AND t.round_idx = r.idx)
ORDER BY r.started_at
"""
SET_COLUMNS = """
UPDATE jobs SET dataset_columns = coalesce(dataset_columns, :columns),
    dp_delta = coalesce(dp_delta, CAST(:delta AS DOUBLE PRECISION))
WHERE id = :job_id
"""
JOB_COLUMNS = "SELECT dataset_columns FROM jobs WHERE id = :job_id"
JOB_DELTA = "SELECT dp_delta FROM jobs WHERE id = :job_id"
HAS_TASKS = "SELECT count(*) FROM tasks WHERE job_id = :job_id AND round_idx = :idx"


async def replace_for_node(conn: Conn, node_id: str, declared: list[DatasetRow]) -> None:
    """Make `declared` (with `allowed` emails) exactly the node's datasets."""
    await conn.execute(DELETE, {"node_id": node_id})
    if not declared:
        return
    await conn.executemany(
        INSERT,
        [
            {
                "node_id": node_id,
                "name": d.name,
                "format": d.format,
                "columns": msgspec.json.encode(d.columns).decode(),
                "rows": d.rows,
                "description": d.description,
            }
            for d in declared
        ],
    )
    grants: list[Params] = [
        {"node_id": node_id, "name": d.name, "email": email}
        for d in declared
        for email in sorted(set(d.allowed))
    ]
    if grants:
        await conn.executemany(GRANT, grants)


async def of_nodes(conn: Conn, node_ids: list[str] | None) -> list[DatasetRow]:
    """The datasets of these nodes (every node's when None), by node and name."""
    wanted = None if node_ids is None else set(node_ids)
    rows = [
        r
        for r in await fetch_all(conn, LIST, {}, DatasetRow)
        if wanted is None or r.node_id in wanted
    ]
    allowed: dict[tuple[str, str], list[str]] = {}
    for g in await conn.fetch(GRANTS, {}):
        allowed.setdefault((str(g[0]), str(g[1])), []).append(str(g[2]))
    for r in rows:
        r.allowed = allowed.get((r.node_id, r.name), [])
    return rows


async def holders(conn: Conn, job_id: str, alive_since: int, min_reputation: float) -> list[Holder]:
    """Nodes heard since `alive_since`, not draining and of good standing, that hold the job's
    dataset and let its owner use it, by node id."""
    params = {"job_id": job_id, "alive_since": alive_since, "min_reputation": min_reputation}
    return await fetch_all(conn, HOLDERS, params, Holder)


async def waiting_rounds(conn: Conn) -> list[tuple[str, int]]:
    """Rounds of node-local jobs still waiting for enough nodes (no tasks placed yet)."""
    rows = await conn.fetch(WAITING, {})
    return [(str(r[0]), int(r[1])) for r in rows]


async def job_columns(conn: Conn, job_id: str) -> str | None:
    """The column order (a JSON list) a node-local job's tasks see; None before its first
    placement."""
    value = await fetch_value(conn, JOB_COLUMNS, {"job_id": job_id})
    return None if value is None else str(value)


async def fix_columns(conn: Conn, job_id: str, columns: str, delta: float | None) -> None:
    """Fix a job's column order (a JSON list) and its delta (None: not yet), each unless
    already fixed."""
    await conn.execute(SET_COLUMNS, {"job_id": job_id, "columns": columns, "delta": delta})


async def job_delta(conn: Conn, job_id: str) -> float:
    """A DP job's delta (fixed at submit, or at its first placement)."""
    return cast(float, await fetch_value(conn, JOB_DELTA, {"job_id": job_id}) or 0.0)


async def round_has_tasks(conn: Conn, job_id: str, idx: int) -> bool:
    """Whether round `idx` of the job has been placed."""
    return bool(await fetch_value(conn, HAS_TASKS, {"job_id": job_id, "idx": idx}))

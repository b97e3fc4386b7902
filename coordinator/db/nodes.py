"""Node records; tokens are stored as their sha256."""

from __future__ import annotations

import msgspec

from gridx.coordinator.db.connection import Conn, fetch_all, fetch_one, fetch_value
from gridx.schemas.agent import Capabilities


class NodeRow(msgspec.Struct, kw_only=True):
    """A node record."""

    id: str
    owner_id: int
    owner_email: str
    name: str
    capabilities: Capabilities
    draining: int
    last_seen: int
    tasks_done: int
    compute_ms: int
    created_at: int
    agreed: int = 0
    disagreed: int = 0
    banned: int = 0
    """Refused at every route (an admin's ban); its leases were returned."""
    removed: int = 0
    """Taken off the fleet by an admin: its token no longer works (it must enrol again)."""
    resting: str = ""
    """Why it takes no task now, as it said (paused, outside its hours); '' when it may."""
    streak: int = 0
    """Results agreed in a row since it was last outvoted (adaptive replication's trust)."""
    suspect: int = 0
    """Outvoted since it last earned trust: replicated jobs' tasks reach it after a delay."""

    @property
    def reputation(self) -> float:
        """(agreed + 1) / (agreed + disagreed + 1): 1 for a new node, falling with each
        disagreement with the majority of a replicated shard."""
        return (self.agreed + 1) / (self.agreed + self.disagreed + 1)


_COLUMNS = """n.id, n.owner_id, u.email AS owner_email, n.name, n.capabilities, n.draining,
n.last_seen, n.tasks_done, n.compute_ms, n.created_at, n.agreed, n.disagreed, n.banned,
n.removed, n.resting, n.streak, n.suspect"""
INSERT = """
INSERT INTO nodes (id, owner_id, name, token_hash, capabilities, last_seen, created_at)
VALUES (:id, :owner_id, :name, :token_hash, :capabilities, :now, :now)
"""
BY_TOKEN_HASH = f"""
SELECT {_COLUMNS} FROM nodes n JOIN users u ON u.id = n.owner_id WHERE n.token_hash = :token_hash
"""
BY_ID = f"SELECT {_COLUMNS} FROM nodes n JOIN users u ON u.id = n.owner_id WHERE n.id = :id"
LIST = f"""
SELECT {_COLUMNS} FROM nodes n JOIN users u ON u.id = n.owner_id
WHERE (CAST(:owner_id AS BIGINT) IS NULL OR n.owner_id = :owner_id)
    AND (:everything = 1 OR n.removed = 0)
ORDER BY n.created_at
"""
BAN = "UPDATE nodes SET banned = :banned, draining = :banned WHERE id = :id"
REMOVE = """
UPDATE nodes SET removed = 1, banned = 1, draining = 1, token_hash = :gone WHERE id = :id
"""
STANDING = """
SELECT CASE WHEN n.removed = 1 THEN 'removed' WHEN n.banned = 1 THEN 'banned'
    WHEN u.disabled = 1 THEN 'owner_disabled' WHEN n.draining = 1 THEN 'draining' ELSE 'ok' END
FROM nodes n JOIN users u ON u.id = n.owner_id WHERE n.id = :id
"""
LEASED = "SELECT id, lease_token FROM tasks WHERE node_id = :node_id AND status = 'leased'"
TOUCH = "UPDATE nodes SET last_seen = :now WHERE id = :id AND last_seen < :now"
SET_CAPABILITIES = "UPDATE nodes SET capabilities = :capabilities WHERE id = :id"
SET_DRAINING = "UPDATE nodes SET draining = :draining WHERE id = :id"
SET_RESTING = "UPDATE nodes SET resting = :resting WHERE id = :id"
VOTES = """
UPDATE nodes SET agreed = agreed + :agreed, disagreed = disagreed + :disagreed,
    tasks_done = tasks_done + :agreed, compute_ms = compute_ms + :agreed * :compute_ms,
    streak = CASE WHEN :disagreed = 1 THEN 0 ELSE streak + :agreed END
WHERE id = :id
"""
CREDIT = """
UPDATE nodes SET tasks_done = tasks_done + 1, compute_ms = compute_ms + :compute_ms WHERE id = :id
"""


async def create(
    conn: Conn,
    *,
    node_id: str,
    owner_id: int,
    name: str,
    token_hash: str,
    capabilities: str,
    now: int,
) -> None:
    """Insert a node."""
    await conn.execute(
        INSERT,
        {
            "id": node_id,
            "owner_id": owner_id,
            "name": name,
            "token_hash": token_hash,
            "capabilities": capabilities,
            "now": now,
        },
    )


async def by_id(conn: Conn, node_id: str) -> NodeRow | None:
    """A node by id (removed ones too)."""
    return await fetch_one(conn, BY_ID, {"id": node_id}, NodeRow)


async def by_token_hash(conn: Conn, token_hash: str) -> NodeRow | None:
    """The node a token belongs to, if any."""
    return await fetch_one(conn, BY_TOKEN_HASH, {"token_hash": token_hash}, NodeRow)


async def list_nodes(conn: Conn, owner_id: int | None, everything: bool = False) -> list[NodeRow]:
    """Nodes of one owner, or all nodes when `owner_id` is None; removed ones only when
    `everything`."""
    params: dict[str, object] = {"owner_id": owner_id, "everything": int(everything)}
    return await fetch_all(conn, LIST, params, NodeRow)


async def set_banned(conn: Conn, node_id: str, banned: bool) -> None:
    """Ban a node (it is refused everywhere; drained too) or lift the ban."""
    await conn.execute(BAN, {"id": node_id, "banned": int(banned)})


async def remove(conn: Conn, node_id: str) -> None:
    """Take a node off the fleet: its token stops working (it must enrol again)."""
    await conn.execute(REMOVE, {"id": node_id, "gone": f"removed:{node_id}"})


async def standing(conn: Conn, node_id: str) -> str:
    """Whether a node may work now: 'ok', 'draining', 'owner_disabled', 'banned' or 'removed'
    (a node that is not there at all is 'removed')."""
    found = await fetch_value(conn, STANDING, {"id": node_id})
    return str(found) if found is not None else "removed"


async def leased(conn: Conn, node_id: str) -> list[tuple[str, str]]:
    """(task id, lease token) of the tasks a node holds."""
    return [(str(r[0]), str(r[1])) for r in await conn.fetch(LEASED, {"node_id": node_id})]


async def names(conn: Conn, node_ids: list[str]) -> dict[str, str]:
    """The display names of these nodes, by id."""
    if not node_ids:
        return {}
    marks = ", ".join(f":n{i}" for i in range(len(node_ids)))
    sql = f"SELECT id, name FROM nodes WHERE id IN ({marks})"  # marks only, never input
    rows = await conn.fetch(sql, {f"n{i}": n for i, n in enumerate(node_ids)})
    return {str(r[0]): str(r[1]) for r in rows}


async def touch_many(conn: Conn, seen: dict[str, int]) -> None:
    """Record the latest heartbeat time of many nodes in one statement batch."""
    await conn.executemany(TOUCH, [{"id": k, "now": v} for k, v in sorted(seen.items())])


async def set_capabilities(conn: Conn, node_id: str, capabilities: str) -> None:
    """Replace a node's advertised capabilities."""
    await conn.execute(SET_CAPABILITIES, {"id": node_id, "capabilities": capabilities})


async def set_resting(conn: Conn, node_id: str, resting: str) -> None:
    """Note why the node takes no task now ('' : it may)."""
    await conn.execute(SET_RESTING, {"id": node_id, "resting": resting})


async def set_draining(conn: Conn, node_id: str, draining: bool) -> None:
    """Mark a node draining (finish the current task, take no more) or not."""
    await conn.execute(SET_DRAINING, {"id": node_id, "draining": int(draining)})


async def credit(conn: Conn, node_id: str, compute_ms: int) -> None:
    """Count one finished task (and its compute time) for a node."""
    await conn.execute(CREDIT, {"id": node_id, "compute_ms": compute_ms})


class Trust(msgspec.Struct, kw_only=True):
    """What adaptive replication knows of a node."""

    id: str
    streak: int
    disagreed: int
    suspect: int


TRUST = "SELECT id, streak, disagreed, suspect FROM nodes WHERE id = :id"
SET_SUSPECT = "UPDATE nodes SET suspect = :suspect WHERE id = :id"


async def trust(conn: Conn, node_ids: list[str]) -> list[Trust]:
    """The trust records of these nodes (each once, by id)."""
    found = [await fetch_one(conn, TRUST, {"id": n}, Trust) for n in sorted(set(node_ids))]
    return [t for t in found if t is not None]


async def set_suspect(conn: Conn, node_id: str, suspect: bool) -> None:
    """Mark a node suspect (outvoted, not trusted again yet) or not."""
    await conn.execute(SET_SUSPECT, {"id": node_id, "suspect": int(suspect)})


async def count_votes(conn: Conn, votes: list[tuple[str, bool, int]]) -> None:
    """Count each node's agreement (True) or disagreement with a replicated shard's majority;
    a copy that agreed earns its task and compute time (ms) and lengthens its node's streak, one
    that disagreed earns nothing and ends it."""
    rows = [
        {"id": n, "agreed": int(ok), "disagreed": int(not ok), "compute_ms": ms}
        for n, ok, ms in sorted(votes)
    ]
    await conn.executemany(VOTES, rows)

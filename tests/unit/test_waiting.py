"""Why queued work waits, for each thing that can hold it up."""

from __future__ import annotations

from gridx.coordinator.services.waiting import explain
from gridx.schemas.agent import Capabilities
from gridx.schemas.jobs import JobConfig
from gridx.schemas.nodes import NodeInfo


def node(name: str, status: str = "online", resting: str = "", **caps: object) -> NodeInfo:
    return NodeInfo(
        id=f"n-{name}", name=name, owner="o@x.org", status=status,  # type: ignore[arg-type]
        capabilities=Capabilities(**{"sandbox": "strong", "cpus": 4, **caps}),  # type: ignore[arg-type]
        last_seen=0, tasks_done=0, created_at=0, resting=resting,
    )  # fmt: skip


def test_each_reason_a_job_waits() -> None:
    plain = JobConfig()
    assert explain(plain, [], None).startswith("no node is online")
    assert explain(plain, [node("a", "offline"), node("b", "banned")], None).startswith(
        "no node is online"
    )
    strong = JobConfig(min_sandbox="strong", require_gpu=True)
    assert explain(strong, [node("a", sandbox="weak"), node("b")], None) == (
        "none of the 2 online nodes has what the job asks: a GPU, a strong sandbox"
    )
    paused = node("a", "resting", "paused by its owner (gridx-node resume)")
    assert explain(plain, [paused], None) == (
        "the 1 node(s) able to run it take no task now (a: paused by its owner (gridx-node resume))"
    )
    local = JobConfig(dataset="clinic", min_nodes=2)
    assert "no online node holds dataset 'clinic' for you" in explain(local, [node("a")], set())
    assert explain(local, [node("a"), node("b")], {"n-a"}) == (
        "waiting for 2 holders online (--min-nodes); 1 now"
    )
    assert "able node(s) to take it" in explain(plain, [node("a"), paused], None)

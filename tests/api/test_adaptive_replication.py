"""Adaptive replication (`replicas: adaptive`) driven by hand: new nodes are always checked, a
tie is broken by a third copy, a trusted node goes unchecked, and a trusted node outvoted in a
round has its unchecked result of that round checked before the round merges."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from gridx.coordinator.db import connect
from gridx.coordinator.services.spot_checks import check_probability, drawn, suspected
from gridx.schemas.jobs import JobConfig
from tests.api.helpers import claim, complete, register, submit, upload
from tests.support.api import Api
from tests.weightfiles import state, write_pth

FLOATS = ("fc.weight", "fc.bias")


def test_trust_grows_with_the_streak_and_shrinks_with_each_outvote() -> None:
    assert check_probability(0, 0) == check_probability(9, 0) == 1.0
    assert check_probability(10, 0) == pytest.approx(0.1)
    assert check_probability(40, 0) == pytest.approx(0.025)
    assert check_probability(19, 1) == 1.0 and check_probability(20, 1) == pytest.approx(0.05)
    assert check_probability(79, 3) == 1.0  # outvoted three times: 80 in a row needed
    assert not suspected(0, 0)  # a new node is checked, not suspected
    assert suspected(5, 1) and suspected(19, 1) and not suspected(20, 1)
    config = JobConfig(seed=3)
    draws = [drawn(config, f"task-{i}", 0.1) for i in range(2000)]
    assert draws == [drawn(config, f"task-{i}", 0.1) for i in range(2000)]  # replayable
    assert 150 < sum(draws) < 250  # about one in ten


def send(
    api: Api, node: dict[str, str], task: dict[str, Any], tmp: Path, sd: Any, tag: str
) -> None:
    sha = upload(api, task, write_pth(tmp / f"{tag}.pth", sd).read_bytes())
    r = complete(api, node, task, sha)
    assert r.status_code == 200, r.text


def detail(api: Api, job_id: str) -> dict[str, Any]:
    return api.client.get(f"/jobs/{job_id}", headers=api.alice).json()


def settled(api: Api, job_id: str) -> dict[str, Any]:
    """The job once no merge or vote is under way (a vote may queue copies)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = detail(api, job_id)
        if body["job"]["status"] != "aggregating":
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is still aggregating")


def verdicts(body: dict[str, Any]) -> dict[tuple[int, int], str | None]:
    return {(t["shard"], t["copy"]): t["verdict"] for t in body["tasks"] if t["kind"] == "train"}


def nodes_by_name(api: Api) -> dict[str, dict[str, Any]]:
    every = api.client.get("/nodes?all=1", headers=api.admin).json()
    return {n["name"]: n for n in every}


def trust(api: Api, name: str, streak: int) -> None:
    """Give a node a record (as a long history of checked results would)."""

    async def go() -> None:
        db = await connect(api.settings.db_url)
        try:
            async with db.transaction() as conn:
                await conn.execute(
                    "UPDATE nodes SET streak = :streak WHERE name = :name",
                    {"streak": streak, "name": name},
                )
        finally:
            await db.close()

    asyncio.run(go())


def new_job(api: Api) -> str:
    r = submit(api, api.alice, {"rounds": 1, "shards": 2, "replicas": "adaptive"})
    assert r.status_code == 201, r.text
    return str(r.json()["job"]["id"])


def test_new_nodes_are_checked_and_a_third_copy_breaks_a_tie(api: Api, tmp_path: Path) -> None:
    job_id = new_job(api)
    na = register(api, api.alice, "a")
    nb = register(api, api.bob, "b")
    nc = register(api, api.admin, "c")
    s0, s1 = claim(api, na), claim(api, nb)
    assert s0 and s1 and (s0["shard"], s1["shard"]) == (0, 1)
    send(api, na, s0, tmp_path, state(0), "h0")
    send(api, nb, s1, tmp_path, state(1), "h1")
    # both nodes are new: each result got a check, for a node of another owner
    check0 = claim(api, nc)
    assert check0 is not None and check0["shard"] == 0
    assert claim(api, nb) is None  # b may not check shard 1: it holds its first copy
    send(api, nc, check0, tmp_path, state(0), "h0c")
    check1 = claim(api, na)
    assert check1 is not None and check1["shard"] == 1
    send(api, na, check1, tmp_path, state(9, scale=5.0), "g1")  # a wrong check
    body = settled(api, job_id)
    assert body["job"]["status"] == "running"  # shard 1's two copies disagree: a third
    tie = claim(api, nc)
    assert tie is not None and tie["shard"] == 1
    send(api, nc, tie, tmp_path, state(1), "h1c")
    body = settled(api, job_id)
    assert body["job"]["status"] == "succeeded", body["job"]
    assert verdicts(body) == {
        (0, 0): "agreed",
        (0, 1): "agreed",
        (1, 0): "agreed",
        (1, 1): "disagreed",
        (1, 2): "agreed",
    }
    nodes = nodes_by_name(api)
    assert (nodes["a"]["streak"], nodes["a"]["disagreed"]) == (0, 1)  # outvoted: starts over
    assert (nodes["b"]["streak"], nodes["c"]["streak"]) == (1, 2)
    assert nodes["a"]["tasks_done"] == 1  # credit only for the result that was used
    assert nodes["a"]["suspect"] and not nodes["b"]["suspect"] and not nodes["c"]["suspect"]
    # a suspect node takes a replicated job's task only once trusted nodes had their pick...
    new_job(api)
    assert claim(api, na) is None
    api.clock.advance(api.settings.suspect_defer_s)
    late = claim(api, na)
    assert late is not None and late["shard"] == 0
    # ...and an unreplicated job's at once
    r = submit(api, api.alice, {"rounds": 1, "shards": 1})
    assert r.status_code == 201, r.text
    assert claim(api, na) is not None


def test_a_trusted_node_outvoted_in_a_round_has_its_unchecked_result_checked(
    api: Api, tmp_path: Path
) -> None:
    job_id = new_job(api)
    honest = register(api, api.alice, "honest")
    trusted = register(api, api.bob, "trusted")
    third = register(api, api.admin, "third")
    trust(api, "trusted", 1_000_000)  # checked with probability 1e-6
    s0 = claim(api, trusted)
    s1 = claim(api, honest)
    assert s0 and s1 and (s0["shard"], s1["shard"]) == (0, 1)
    send(api, trusted, s0, tmp_path, state(7, scale=5.0), "g0")  # taken on trust, unchecked
    send(api, honest, s1, tmp_path, state(1), "h1")
    check1 = claim(api, trusted)  # the only other owner free to check shard 1
    assert check1 is not None and check1["shard"] == 1 and claim(api, third) is None
    send(api, trusted, check1, tmp_path, state(8, scale=5.0), "g1")
    settled(api, job_id)
    tie = claim(api, third)
    assert tie is not None and tie["shard"] == 1
    send(api, third, tie, tmp_path, state(1), "h1c")
    # the trusted node is outvoted on shard 1: its unchecked shard 0 is checked after all
    body = settled(api, job_id)
    assert body["job"]["status"] == "running", body["job"]
    check0 = claim(api, honest)
    assert check0 is not None and check0["shard"] == 0
    send(api, honest, check0, tmp_path, state(0), "h0")
    settled(api, job_id)
    tie0 = claim(api, third)
    assert tie0 is not None and tie0["shard"] == 0
    send(api, third, tie0, tmp_path, state(0), "h0c")
    body = settled(api, job_id)
    assert body["job"]["status"] == "succeeded", body["job"]
    assert verdicts(body)[(0, 0)] == "disagreed" and verdicts(body)[(1, 1)] == "disagreed"
    r = api.client.get(f"/jobs/{job_id}/model", headers=api.alice)
    final = torch.load(io.BytesIO(r.content), weights_only=True)
    for k in FLOATS:  # the honest updates only, 10 rows each
        torch.testing.assert_close(final[k], (state(0)[k] + state(1)[k]) / 2)
    nodes = nodes_by_name(api)
    assert (nodes["trusted"]["streak"], nodes["trusted"]["disagreed"]) == (0, 2)
    assert nodes["trusted"]["tasks_done"] == 0


def test_a_trusted_nodes_result_goes_unchecked(api: Api, tmp_path: Path) -> None:
    job_id = new_job(api)
    a = register(api, api.alice, "a")
    b = register(api, api.bob, "b")
    trust(api, "a", 1_000_000)
    trust(api, "b", 1_000_000)
    s0, s1 = claim(api, a), claim(api, b)
    assert s0 and s1
    send(api, a, s0, tmp_path, state(0), "u0")
    send(api, b, s1, tmp_path, state(1), "u1")
    body = settled(api, job_id)
    assert body["job"]["status"] == "succeeded", body["job"]
    assert verdicts(body) == {(0, 0): "trusted", (1, 0): "trusted"}
    nodes = nodes_by_name(api)
    assert nodes["a"]["tasks_done"] == nodes["b"]["tasks_done"] == 1
    assert nodes["a"]["streak"] == 1_000_000  # unchecked results neither lengthen nor end it

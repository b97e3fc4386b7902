"""Jobs on node-local datasets through the real API: which nodes get their tasks (holders whose
owners allow the job's owner, with the job's columns), what a task tells its node, the weights,
and rounds that wait for enough nodes. Nodes are driven by hand."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.api.helpers import TRAIN, claim, complete, fail, register, upload, wait_status
from tests.support.api import Api


def _declare(api: Api, node: dict[str, str], *datasets: dict[str, Any]) -> None:
    """A heartbeat that says what the node holds."""
    r = api.client.post("/agent/heartbeat", headers=node, json={"datasets": list(datasets)})
    assert r.status_code == 200, r.text


def _clinic(columns: list[str], rows: int = 100, allow: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": "clinic",
        "format": "csv",
        "columns": columns,
        "rows": rows,
        "allow_users": allow or [],
    }


def _submit(api: Api, who: dict[str, str], config: dict[str, Any]) -> Any:
    return api.client.post(
        "/jobs/",
        headers=who,
        files={"train_py": ("train.py", io.BytesIO(TRAIN))},
        data={"config": json.dumps({"init_step": False, **config})},
    )


def _weights(path: Path, value: float) -> bytes:
    torch.save({"w": torch.full((4,), value)}, path)
    return path.read_bytes()


def test_a_job_on_a_dataset_runs_only_where_it_is_held_for_its_owner(
    api: Api, tmp_path: Path
) -> None:
    cols = ["a", "b", "label"]
    held = register(api, api.alice, "alice-1")
    _declare(api, held, _clinic(cols, rows=100))
    reordered = register(api, api.alice, "alice-2")  # same columns, another order
    _declare(api, reordered, _clinic(["label", "a", "b"], rows=30))
    other_cols = register(api, api.alice, "alice-3")  # another column set: left out
    _declare(api, other_cols, _clinic(["a", "c", "label"]))
    empty = register(api, api.alice, "alice-4")  # holds nothing
    _declare(api, empty)
    not_allowed = register(api, api.bob, "bob-1")  # bob's, not shared with alice
    _declare(api, not_allowed, _clinic(cols, allow=["carol@example.org"]))
    shared = register(api, api.bob, "bob-2")  # bob's, shared with alice
    _declare(api, shared, _clinic(cols, rows=20, allow=["Alice@Example.org"]))
    stranger = register(api, api.admin, "root-1")  # shared with alice, a holder she never named
    _declare(api, stranger, _clinic(cols, rows=1 << 50, allow=["alice@example.org"]))

    listed = {d["name"]: d for d in api.client.get("/datasets", headers=api.alice).json()}
    assert listed["clinic"]["nodes"] == 6 and listed["clinic"]["usable_nodes"] == 5
    assert listed["clinic"]["columns"] == cols

    config = {"dataset": "clinic", "rounds": 1, "min_nodes": 3, "max_weight": 50}
    config["holders"] = ["Bob@example.org"]  # bob's copies are welcome; root's is not named
    r = _submit(api, api.alice, config)
    assert r.status_code == 201, r.text
    job_id = r.json()["job"]["id"]
    for node in (other_cols, empty, not_allowed, stranger):
        assert claim(api, node) is None
    tasks = {}
    for name, node in (("alice-1", held), ("alice-2", reordered), ("bob-2", shared)):
        task = claim(api, node)
        assert task is not None and task["data"] is None, task
        assert task["dataset"] == {"name": "clinic", "columns": cols}  # the majority's order
        assert task["num_shards"] == 3
        assert claim(api, node) is None  # one task per node
        tasks[name] = task
    for i, (name, task) in enumerate(tasks.items()):
        node = {"alice-1": held, "alice-2": reordered, "bob-2": shared}[name]
        sha = upload(api, task, _weights(tmp_path / f"{name}.pth", float(i)))
        assert complete(api, node, task, sha).status_code == 200
    body = wait_status(api, api.alice, job_id, "succeeded")
    weights = {t["node_id"]: t["rows"] for t in body["tasks"]}
    assert sorted(weights.values()) == [20, 30, 50]  # declared rows, capped at max_weight
    assert sorted(body["rounds"][0]["nodes"]) == ["alice-1", "alice-2", "bob-2"]
    model = torch.load(
        io.BytesIO(api.client.get(f"/jobs/{job_id}/model", headers=api.alice).content),
        weights_only=True,
    )
    expected = (0 * 50 + 1 * 30 + 2 * 20) / 100  # each update weighted by its node's rows
    assert torch.allclose(model["w"], torch.full((4,), expected))


def test_a_dataset_its_node_no_longer_declares_is_not_claimed(api: Api) -> None:
    node = register(api, api.alice, "n")
    _declare(api, node, _clinic(["x", "label"]))
    job_id = _submit(api, api.alice, {"dataset": "clinic", "rounds": 1}).json()["job"]["id"]
    _declare(api, node)  # removed at the node: the next heartbeat says so
    assert claim(api, node) is None
    _declare(api, node, _clinic(["x", "label"]))
    task = claim(api, node)
    assert task is not None and task["job_id"] == job_id


def test_a_round_waits_for_min_nodes_then_starts_when_they_come(api: Api) -> None:
    first = register(api, api.alice, "first")
    _declare(api, first, _clinic(["x", "label"]))
    r = _submit(api, api.alice, {"dataset": "clinic", "rounds": 1, "min_nodes": 2})
    assert r.status_code == 201, r.text
    assert claim(api, first) is None  # one holder of two: the round waits
    second = register(api, api.alice, "second")
    _declare(api, second, _clinic(["x", "label"]))
    deadline = time.monotonic() + 30
    task = None
    while task is None and time.monotonic() < deadline:  # the sweeper places it
        task = claim(api, second)
        time.sleep(0.1)
    assert task is not None and task["num_shards"] == 2
    assert claim(api, first) is not None


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"dataset": "clinic", "replicas": 2}, "replicas"),
        ({"dataset": "clinic", "min_nodes": 5, "max_nodes": 2}, "min_nodes"),
        ({"dataset": "clinic", "backup_tasks": True}, "backup_tasks"),
        ({"dataset": "bad name!"}, "dataset"),
    ],
)
def test_local_data_configs_that_cannot_work_are_refused(
    api: Api, config: dict[str, Any], field: str
) -> None:
    r = _submit(api, api.alice, config)
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.json()


def test_a_job_on_a_dataset_uploads_no_data(api: Api) -> None:
    r = api.client.post(
        "/jobs/",
        headers=api.alice,
        files={
            "train_py": ("train.py", io.BytesIO(TRAIN)),
            "data": ("d.csv", io.BytesIO(b"x\n1\n")),
        },
        data={"config": json.dumps({"dataset": "clinic"})},
    )
    assert r.status_code == 422 and r.json()["field"] == "data", r.text


def test_a_node_that_leaves_is_dropped_by_the_round_deadline(api: Api, tmp_path: Path) -> None:
    stays, leaves = register(api, api.alice, "stays"), register(api, api.alice, "leaves")
    _declare(api, stays, _clinic(["x", "label"], rows=10))
    _declare(api, leaves, _clinic(["x", "label"], rows=10))
    config = {"dataset": "clinic", "rounds": 1, "min_nodes": 2}
    config |= {"min_fraction": 0.5, "round_deadline_s": 60}
    job_id = _submit(api, api.alice, config).json()["job"]["id"]
    gone = claim(api, leaves)  # it takes its task, then is never heard from again
    task = claim(api, stays)
    assert gone is not None and task is not None
    sha = upload(api, task, _weights(tmp_path / "w.pth", 3.0))
    assert complete(api, stays, task, sha).status_code == 200
    api.clock.advance(61)  # past the deadline with half the nodes in: the round closes
    body = wait_status(api, api.alice, job_id, "succeeded")
    assert body["rounds"][0]["nodes"] == ["stays"]
    assert {t["status"] for t in body["tasks"]} == {"succeeded", "cancelled"}


def test_a_private_job_on_a_dataset_lets_only_noised_float_weights_leave(
    api: Api, tmp_path: Path
) -> None:
    """A script allowed on a node's data, under dp, hides rows in every channel it has: an
    integer tensor (no noise touches it), a failure's message and stderr, its metrics. None of
    it reaches the job's owner."""
    node = register(api, api.alice, "alice-1")
    _declare(api, node, _clinic(["a", "b", "label"]))
    start = tmp_path / "start.pth"
    torch.save({"w": torch.zeros(4), "steps": torch.zeros(4, dtype=torch.int64)}, start)
    dp = {"noise_multiplier": 1.0, "clip_norm": 1.0, "delta": 1e-3}
    config = {"dataset": "clinic", "rounds": 1, "dp": dp, "max_attempts": 3}

    def private_job() -> str:
        r = api.client.post(
            "/jobs/",
            headers=api.alice,
            files={"train_py": ("train.py", TRAIN), "init_model": ("s.pth", start.read_bytes())},
            data={"config": json.dumps(config)},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["job"]["id"])

    job_id = private_job()
    secret = 7.123456789

    task = claim(api, node)
    assert task is not None and task["private"] is True
    failed = fail(api, node, task, "nonzero_exit", f"row 0: {secret}", f"a,b,label\n{secret},1,0")
    assert failed.status_code == 200, failed.text

    task = claim(api, node)
    assert task is not None
    honest = tmp_path / "honest.pth"
    torch.save({"w": torch.full((4,), 0.1), "steps": torch.zeros(4, dtype=torch.int64)}, honest)
    done = complete(api, node, task, upload(api, task, honest.read_bytes()), metrics={"a": secret})
    assert done.status_code == 200, done.text
    body = wait_status(api, api.alice, job_id, "succeeded")
    assert str(secret) not in json.dumps(body)
    attempts = body["tasks"][0]["history"]
    assert [a["error_code"] for a in attempts] == ["nonzero_exit", None]
    assert all(not a["stderr_tail"] for a in attempts)
    assert body["rounds"][0]["metrics"] == {}

    # rows hidden in an integer tensor (which no noise touches): refused, and the job ends
    second = private_job()
    task = claim(api, node)
    assert task is not None and task["job_id"] == second
    rows = tmp_path / "rows.pth"
    torch.save({"w": torch.full((4,), 0.1), "steps": torch.tensor([5, 1, 4, 2])}, rows)
    refused = complete(api, node, task, upload(api, task, rows.read_bytes()))
    assert refused.status_code == 422 and "not floating point and changed" in refused.text

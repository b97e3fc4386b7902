"""Asynchronous jobs (FedBuff) driven by hand on a manual clock: buffer steps, staleness
weights, stale updates dropped, the queue moved onto the newest model, a restart mid-buffer, and
what async mode refuses."""

from __future__ import annotations

import io
import random
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import torch
from litestar.testing import TestClient
from safetensors.torch import save_file

from gridx.coordinator.api.app import create_app
from gridx.coordinator.settings import Settings
from tests.api.helpers import CSV, TRAIN, claim, complete, register, submit, upload, wait_status
from tests.support.api import Api, running_api
from tests.weightfiles import state, write_pth

FLOATS = ("fc.weight", "fc.bias")


def start_files(tmp: Path) -> dict[str, tuple[str, bytes]]:
    save_file(state(42), str(tmp / "start.safetensors"))
    return {
        "train_py": ("train.py", TRAIN),
        "data": ("d.csv", CSV.encode()),
        "init_model": ("start.safetensors", (tmp / "start.safetensors").read_bytes()),
    }


def submit_async(api: Api, tmp: Path, **config: Any) -> str:
    body = {"mode": "async", "rounds": 3, "shards": 3, "buffer": 2, **config}
    r = submit(api, api.alice, body, files=start_files(tmp))
    assert r.status_code == 201, r.text
    return str(r.json()["job"]["id"])


def send(api: Api, node: dict[str, str], task: dict[str, Any], tmp: Path, seed: int) -> Any:
    """Upload state(seed) as the task's result and complete it; returns the update."""
    update = state(seed)
    sha = upload(api, task, write_pth(tmp / f"u{seed}.pth", update).read_bytes())
    r = complete(api, node, task, sha, metrics={"loss": float(seed)})
    assert r.status_code == 200, r.text
    return update


def detail(api: Api, job_id: str) -> dict[str, Any]:
    return api.client.get(f"/jobs/{job_id}", headers=api.alice).json()


def wait_step(api: Api, job_id: str, idx: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = detail(api, job_id)
        # (the job and its rounds are read one after the other: wait until both show the step)
        moved = body["job"]["current_round"] > idx or body["job"]["status"] != "running"
        if moved and any(r["index"] == idx and r["status"] == "done" for r in body["rounds"]):
            return body
        time.sleep(0.05)
    raise AssertionError(f"step {idx} was not merged: {body['rounds']}")


def model_after(api: Api, job_id: str, step: int) -> dict[str, torch.Tensor]:
    r = api.client.get(f"/jobs/{job_id}/model?round={step}", headers=api.alice)
    assert r.status_code == 200, r.text
    return torch.load(io.BytesIO(r.content), weights_only=True)


def rows_of(body: dict[str, Any]) -> dict[int, int]:
    return {t["shard"]: t["rows"] for t in body["tasks"] if t["kind"] == "train"}


def step(
    x: dict[str, torch.Tensor],
    updates: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int, int]],
) -> dict[str, torch.Tensor]:
    """FedBuff's server step as the docs state it: x + sum(n (1+s)^-1/2 (y - o)) / sum(n), over
    (update y, its origin o, rows n, staleness s)."""
    total = sum(n for _, _, n, _ in updates)
    return {
        k: x[k].double()
        + sum(n * (1 + s) ** -0.5 * (y[k].double() - o[k].double()) for y, o, n, s in updates)
        / total
        for k in FLOATS
    }


def close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    for k in FLOATS:
        torch.testing.assert_close(got[k].double(), want[k], rtol=1e-5, atol=1e-6)


def test_a_step_every_k_updates_each_discounted_by_its_staleness(api: Api, tmp_path: Path) -> None:
    job_id = submit_async(api, tmp_path)
    x0 = state(42)
    n0, n1, n2 = (register(api, api.alice, f"n{i}") for i in range(3))
    t0, t1, t2 = claim(api, n0), claim(api, n1), claim(api, n2)
    assert t0 and t1 and t2 and {t0["round"], t1["round"], t2["round"]} == {0}
    rows = rows_of(detail(api, job_id))
    a = send(api, n0, t0, tmp_path, 1)  # buffer: 1 of 2, nothing merges
    assert [r["status"] for r in detail(api, job_id)["rounds"]] == ["running"]
    t3 = claim(api, n0)  # its shard trains again at once, on the newest model (still step 0's)
    assert t3 is not None and t3["shard"] == t0["shard"] and t3["round"] == 0
    b = send(api, n1, t1, tmp_path, 2)  # buffer full: step 0
    body = wait_step(api, job_id, 0)
    x1 = step(x0, [(a, x0, rows[t0["shard"]], 0), (b, x0, rows[t1["shard"]], 0)])
    close(model_after(api, job_id, 0), x1)
    assert body["job"]["status"] == "running" and body["job"]["current_round"] == 1
    assert body["rounds"][0]["staleness"] == [0, 0]
    # the task queued for shard 1 while step 0 merged was moved onto step 1's model
    t4 = claim(api, n1)
    assert t4 is not None and t4["shard"] == t1["shard"] and t4["round"] == 1
    # two updates trained on step 0's model arrive one step late: each counts 1/sqrt(2)
    c = send(api, n2, t2, tmp_path, 3)
    d = send(api, n0, t3, tmp_path, 4)
    body = wait_step(api, job_id, 1)
    x1_model = model_after(api, job_id, 0)
    x2 = step(x1_model, [(c, x0, rows[t2["shard"]], 1), (d, x0, rows[t3["shard"]], 1)])
    close(model_after(api, job_id, 1), x2)
    assert body["rounds"][1]["staleness"] == [1, 1]
    # the last step: one update a step late, one fresh; then the job ends and nothing trains on
    t5 = claim(api, n2)
    assert t5 is not None and t5["round"] == 2
    e = send(api, n1, t4, tmp_path, 5)
    f = send(api, n2, t5, tmp_path, 6)
    x2_model = model_after(api, job_id, 1)
    body = wait_step(api, job_id, 2)
    assert sorted(body["rounds"][2]["staleness"]) == [0, 1]
    x3 = step(x2_model, [(e, x1_model, rows[t4["shard"]], 1), (f, x2_model, rows[t5["shard"]], 0)])
    r = api.client.get(f"/jobs/{job_id}/model", headers=api.alice)
    close(torch.load(io.BytesIO(r.content), weights_only=True), x3)
    # the job ends just after its last step commits, once the training still running is stopped
    body = wait_status(api, api.alice, job_id, "succeeded", timeout=30)
    assert body["job"]["tasks_done"] == body["job"]["tasks_total"] == 6
    assert not [t for t in body["tasks"] if t["status"] in ("queued", "leased")]
    merged = sorted(t["merged_into"] for t in body["tasks"] if t["merged_into"] is not None)
    assert merged == [0, 0, 1, 1, 2, 2]


def test_a_server_optimizer_steps_on_the_buffered_pseudo_gradient(api: Api, tmp_path: Path) -> None:
    """FedAvgM with momentum 0.5 and server_lr 0.5 over FedBuff's mean: the outer SGD of
    `test_strategies`, fed the staleness-discounted average."""
    strategy = {"name": "fedavgm", "server_lr": 0.5, "momentum": 0.5}
    job_id = submit_async(api, tmp_path, rounds=2, strategy=strategy)
    x0 = state(42)
    n0, n1, n2 = (register(api, api.alice, f"n{i}") for i in range(3))
    t0, t1, t2 = claim(api, n0), claim(api, n1), claim(api, n2)
    assert t0 and t1 and t2
    rows = rows_of(detail(api, job_id))
    a, b = send(api, n0, t0, tmp_path, 1), send(api, n1, t1, tmp_path, 2)
    wait_step(api, job_id, 0)
    avg0 = step(x0, [(a, x0, rows[t0["shard"]], 0), (b, x0, rows[t1["shard"]], 0)])
    g0 = {k: x0[k].double() - avg0[k] for k in FLOATS}  # buffer b1 = g0
    x1 = {k: x0[k].double() - 0.5 * g0[k] for k in FLOATS}
    close(model_after(api, job_id, 0), x1)
    x1_model = model_after(api, job_id, 0)
    t3 = claim(api, n0)
    assert t3 is not None and t3["round"] == 1
    c, d = send(api, n2, t2, tmp_path, 3), send(api, n0, t3, tmp_path, 4)
    wait_step(api, job_id, 1)
    avg1 = step(x1_model, [(c, x0, rows[t2["shard"]], 1), (d, x1_model, rows[t3["shard"]], 0)])
    g1 = {k: x1_model[k].double() - avg1[k] for k in FLOATS}
    b2 = {k: 0.5 * g0[k] + g1[k] for k in FLOATS}
    r = api.client.get(f"/jobs/{job_id}/model", headers=api.alice)
    final = torch.load(io.BytesIO(r.content), weights_only=True)
    close(final, {k: x1_model[k].double() - 0.5 * b2[k] for k in FLOATS})


def test_an_update_past_max_staleness_is_dropped_and_its_shard_trains_again(
    api: Api, tmp_path: Path
) -> None:
    job_id = submit_async(api, tmp_path, max_staleness=0, rounds=2)
    n0, n1, n2 = (register(api, api.alice, f"n{i}") for i in range(3))
    t0, t1, t2 = claim(api, n0), claim(api, n1), claim(api, n2)
    assert t0 and t1 and t2
    send(api, n0, t0, tmp_path, 1)
    send(api, n1, t1, tmp_path, 2)
    wait_step(api, job_id, 0)
    send(api, n2, t2, tmp_path, 3)  # trained on step 0's model, now one step behind: dropped
    body = detail(api, job_id)
    late = next(t for t in body["tasks"] if t["id"] == t2["task_id"])
    assert late["verdict"] == "stale" and late["merged_into"] is None
    queued = [(t["shard"], t["round"]) for t in body["tasks"] if t["status"] == "queued"]
    assert (t2["shard"], 1) in queued  # its shard goes again, on the newest model
    assert body["job"]["tasks_done"] == 2  # the dropped update is not counted as done


def test_a_step_keeps_the_updates_still_buffered_from_its_own_model(
    api: Api, tmp_path: Path
) -> None:
    """Merging step 0 lets go of the updates it took, not of every update trained on its
    model: one uploaded before the merge and completed after it is step 1's."""
    job_id = submit_async(api, tmp_path, buffer=1, rounds=2)
    n0, n1 = register(api, api.alice, "n0"), register(api, api.alice, "n1")
    t0, t1 = claim(api, n0), claim(api, n1)
    assert t0 and t1
    late = upload(api, t1, write_pth(tmp_path / "late.pth", state(5)).read_bytes())
    send(api, n0, t0, tmp_path, 1)
    wait_step(api, job_id, 0)
    r = complete(api, n1, t1, late)
    assert r.status_code == 200, r.text
    wait_step(api, job_id, 1)
    body = wait_status(api, api.alice, job_id, "succeeded", timeout=30)  # its last step
    assert body["rounds"][1]["staleness"] == [1]


def test_a_restart_mid_buffer_loses_no_accepted_update(settings: Settings, tmp_path: Path) -> None:
    with running_api(settings) as first:
        job_id = submit_async(first, tmp_path)
        n0, n1 = register(first, first.alice, "n0"), register(first, first.alice, "n1")
        t0, t1 = claim(first, n0), claim(first, n1)
        assert t0 and t1
        a = send(first, n0, t0, tmp_path, 1)  # accepted, waiting in the buffer
        rows = rows_of(detail(first, job_id))
    with TestClient(create_app(settings, first.clock)) as client:
        again = Api(client, first.clock, settings, first.alice, first.bob, first.admin)
        b = send(again, n1, t1, tmp_path, 2)
        body = wait_step(again, job_id, 0)
        assert body["rounds"][0]["staleness"] == [0, 0]
        x0 = state(42)
        want = step(x0, [(a, x0, rows[t0["shard"]], 0), (b, x0, rows[t1["shard"]], 0)])
        close(model_after(again, job_id, 0), want)


def seeded_run(api: Api, tmp: Path, seed: int, tag: str) -> str:
    """An async job of 3 shards, buffer 2, 4 steps, with three nodes whose updates arrive in
    the order `seed` draws; each update depends only on its task's place in the job. Returns
    the final model's sha256."""
    job_id = submit_async(api, tmp, rounds=4)
    nodes = [register(api, api.alice, f"{tag}-{i}") for i in range(3)]
    rng = random.Random(seed)
    held: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = detail(api, job_id)
        if body["job"]["status"] == "succeeded":
            return str(body["final_model_sha256"])
        if any(r["status"] == "aggregating" for r in body["rounds"]):
            time.sleep(0.02)  # a step merges: the next arrival comes after it, in every run
            continue
        if sum(r["status"] == "done" for r in body["rounds"]) == 4:
            time.sleep(0.02)  # the last step is in: the job ends, its training cancelled
            continue
        for i, node in enumerate(nodes):
            if i not in held and (task := claim(api, node)) is not None:
                held[i] = task
        i = rng.choice(sorted(held))
        task = held.pop(i)
        place = task["task_id"].removeprefix(job_id)
        send(api, nodes[i], task, tmp, zlib.crc32(place.encode()) % 1000)
    raise AssertionError(f"job {job_id} did not end: {detail(api, job_id)['job']}")


def test_an_async_jobs_model_is_bit_identical_for_the_same_arrival_order(
    api: Api, tmp_path: Path
) -> None:
    first = seeded_run(api, tmp_path, 7, "a")
    assert seeded_run(api, tmp_path, 7, "b") == first
    assert seeded_run(api, tmp_path, 8, "c") != first  # another order: another model


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"replicas": 2}, "replicas"),
        ({"dp": {"noise_multiplier": 1.0, "clip_norm": 1.0}}, "dp"),
        ({"buffer": 4}, "buffer"),
        ({"backup_tasks": True}, "backup_tasks"),
        ({"mode": "sync", "buffer": 2}, "buffer"),
        ({"mode": "sync", "max_staleness": 2}, "max_staleness"),
    ],
)
def test_what_async_mode_refuses_names_the_field_and_why(
    api: Api, tmp_path: Path, config: dict[str, Any], field: str
) -> None:
    body = {"mode": "async", "rounds": 2, "shards": 3, **config}
    r = submit(api, api.alice, body, files=start_files(tmp_path))
    assert r.status_code == 422, r.text
    assert field in [e["field"] for e in r.json()["errors"]], r.text

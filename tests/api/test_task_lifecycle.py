"""Leases, fencing, hostile weights and a full multi-round job, through the real app."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import torch

from gridx.coordinator.settings import Settings
from tests.api.helpers import (
    CSV,
    TRAIN,
    claim,
    complete,
    fail,
    register,
    submit,
    upload,
    wait_status,
)
from tests.support.api import Api, running_api
from tests.weightfiles import state, write_pickle_bomb, write_pth


def _pth(tmp_path: Path, seed: int, name: str = "m.pth") -> bytes:
    return write_pth(tmp_path / name, state(seed)).read_bytes()


def _snapshot(api: Api, job_id: str) -> dict:
    body = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    return {
        "job": body["job"],
        "rounds": body["rounds"],
        "tasks": [{k: v for k, v in t.items()} for t in body["tasks"]],
    }


def test_completing_a_task_not_held_or_with_a_stale_token_is_409_and_changes_nothing(
    api: Api, tmp_path: Path
) -> None:
    job_id = submit(api, api.alice).json()["job"]["id"]
    mine, other = register(api, api.alice, "mine"), register(api, api.alice, "other")
    task = claim(api, mine)
    assert task is not None
    sha = upload(api, task, _pth(tmp_path, 1))
    before = _snapshot(api, job_id)
    r = complete(api, other, task, sha)  # not its task
    assert r.status_code == 409 and r.json()["code"] == "stale_lease"
    r = complete(api, mine, task, sha, token="0" * 32)  # wrong fencing token
    assert r.status_code == 409
    r = fail(api, other, task, "x", "not mine to fail")
    assert r.status_code == 409
    assert _snapshot(api, job_id) == before
    # the holder completes; a retry of the same completion is accepted (idempotent)
    assert complete(api, mine, task, sha).json()["status"] == "succeeded"
    assert complete(api, mine, task, sha).json()["status"] == "succeeded"
    # but a different result under the same lease is not, and uploads are closed
    assert complete(api, mine, task, task["code"]["sha256"]).status_code == 409
    assert api.client.put(task["upload_url"], content=b"more").status_code == 409


def test_a_task_that_outlived_its_upload_link_gets_a_fresh_one_and_only_its_holder_does(
    settings: Settings, tmp_path: Path
) -> None:
    with running_api(msgspec.structs.replace(settings, signed_url_s=5)) as api:
        submit(api, api.alice)
        mine, other = register(api, api.alice, "mine"), register(api, api.alice, "other")
        task = claim(api, mine)
        assert task is not None
        ask = {"task_id": task["task_id"], "lease_token": task["lease_token"]}
        api.clock.advance(6)  # the task ran longer than its link lives (its lease renewed)
        payload = _pth(tmp_path, 1)
        expired = api.client.put(task["upload_url"], content=payload)
        assert expired.status_code == 403 and "expired" in expired.json()["message"]
        assert api.client.post("/agent/upload_link", json=ask, headers=other).status_code == 409
        stale = {**ask, "lease_token": "0" * 32}
        assert api.client.post("/agent/upload_link", json=stale, headers=mine).status_code == 409
        fresh = api.client.post("/agent/upload_link", json=ask, headers=mine)
        assert fresh.status_code == 200, fresh.text
        sha = upload(api, {"upload_url": fresh.json()["upload_url"]}, payload)
        assert complete(api, mine, task, sha).json()["status"] == "succeeded"
        done = api.client.post("/agent/upload_link", json=ask, headers=mine)
        assert done.status_code == 409  # the task is over: no more uploads


def test_credit_is_the_time_the_coordinator_measured_never_the_nodes_claim(
    api: Api, tmp_path: Path
) -> None:
    submit(api, api.alice, {"rounds": 3, "shards": 1, "task_timeout_s": 10})
    liar = register(api, api.alice, "liar")

    def run_one(seconds: float, claimed: float) -> None:
        deadline = time.monotonic() + 30
        while (task := claim(api, liar)) is None:  # the next round opens once this one merged
            assert time.monotonic() < deadline, "the next round never opened"
            time.sleep(0.05)
        api.clock.advance(seconds)
        sha = upload(api, task, _pth(tmp_path, task["round"]))
        r = complete(api, liar, task, sha, duration_s=claimed)
        assert r.status_code == 200, r.text

    def credited() -> float:
        rows = api.client.get("/stats/contributors", headers=api.alice).json()
        return float(sum(r["compute_s"] for r in rows))

    run_one(5, 1e9)  # claims 31 years for 5 s of lease
    assert credited() == 5.0
    run_one(20, 1e9)  # past the task's 10 s timeout (within the lease): capped there
    assert credited() == 15.0
    run_one(3, 2.5)  # honest and quick: its own claim is the cap
    assert credited() == 17.5


def _fail(api: Api, node: dict[str, str], task: dict, code: str) -> None:
    r = fail(api, node, task, code)
    assert r.status_code == 200, r.text


def test_the_init_step_makes_one_starting_model_for_every_shard(api: Api, tmp_path: Path) -> None:
    config = {"rounds": 1, "shards": 2, "epochs": 4, "max_attempts": 1, "init_step": True}
    job_id = submit(api, api.alice, config).json()["job"]["id"]
    node = register(api, api.alice)
    first = claim(api, node)
    assert first is not None and first["round"] == -1 and first["shard"] == 0
    assert first["epochs"] == 0 and first["init_model"] is None  # a zero-epoch run first
    assert first["task_id"].endswith("-init-s0")
    _fail(api, node, first, "missing_output")  # a script that cannot run zero epochs
    again = claim(api, node)
    assert again is not None and again["round"] == -1 and again["epochs"] == 4  # the fallback
    start = state(7)
    sha = upload(api, again, write_pth(tmp_path / "start.pth", start).read_bytes())
    assert complete(api, node, again, sha).status_code == 200
    detail = wait_round(api, job_id, -1)
    assert [r["index"] for r in detail["rounds"]][:1] == [-1]
    init_task = detail["tasks"][0]
    assert (
        init_task["round"] == -1 and init_task["attempts"] == 2 and init_task["max_attempts"] == 2
    )
    shards = []
    for _ in range(2):
        task = claim(api, node)  # round 0 is open: wait_round saw the starting model stored
        assert task is not None and task["round"] == 0 and task["epochs"] == 4
        got = torch.load(
            io.BytesIO(api.client.get(task["init_model"]["url"]).content), weights_only=True
        )
        assert all(torch.equal(got[k], start[k]) for k in start)  # the same for every shard
        shards.append(task["shard"])
    assert sorted(shards) == [0, 1]
    detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    assert {t["max_attempts"] for t in detail["tasks"] if t["round"] == 0} == {1}  # untouched


def test_an_init_step_that_never_makes_a_model_fails_the_job_saying_so(api: Api) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 2, "init_step": True}).json()["job"][
        "id"
    ]
    node = register(api, api.alice)
    for _ in range(2):
        task = claim(api, node)
        assert task is not None and task["round"] == -1
        _fail(api, node, task, "nonzero_exit")
    body = wait_status(api, api.alice, job_id, "failed")
    assert body["job"]["error"].startswith("the initialisation step")
    assert "[nonzero_exit]" in body["job"]["error"]


def test_each_round_is_evaluated_on_held_out_data_without_touching_training(
    api: Api, tmp_path: Path
) -> None:
    evaluate = (
        b"import json, os\njson.dump({'accuracy': 0.9}, open(os.environ['GRIDX_METRICS'], 'w'))\n"
    )
    files = {
        "train_py": ("train.py", TRAIN),
        "data": ("d.csv", CSV.encode()),
        "evaluate_py": ("evaluate.py", evaluate),
        "test_data": ("held/out.csv", b"x,label\n1,0\n"),
    }
    config = {"rounds": 1, "shards": 1, "max_attempts": 1}
    job_id = submit(api, api.alice, config, files=files).json()["job"]["id"]
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None and task["kind"] == "train"
    sha = upload(api, task, _pth(tmp_path, 1))
    assert complete(api, node, task, sha).status_code == 200
    body = wait_status(api, api.alice, job_id, "succeeded")  # training is done...
    evaluation = claim(api, node)  # ...and its last round's evaluation still runs
    assert evaluation is not None and evaluation["kind"] == "evaluate"
    assert evaluation["round"] == 0 and evaluation["data"]["name"] == "out.csv"
    assert evaluation["code"]["sha256"] != task["code"]["sha256"]  # evaluate.py, with train.py
    assert evaluation["train"]["sha256"] == task["code"]["sha256"]
    assert evaluation["init_model"]["sha256"] == body["rounds"][0]["output_model_sha256"]
    r = complete(api, node, {**evaluation}, sha, metrics={"accuracy": 0.9})
    assert r.status_code == 422  # an evaluation uploads no weights
    r = api.client.post(
        "/agent/complete_task",
        headers=node,
        json={
            "task_id": evaluation["task_id"],
            "lease_token": evaluation["lease_token"],
            "metrics": {"accuracy": 0.9, "loss": 0.3},
        },
    )
    assert r.status_code == 200, r.text
    body = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    assert body["rounds"][0]["held_out"] == {"accuracy": 0.9, "loss": 0.3}
    assert body["rounds"][0]["metrics"] is not None  # the training metrics, apart
    # a failing evaluation is shown on its task and never fails the job
    job_id = submit(api, api.alice, config, files=files).json()["job"]["id"]
    task = claim(api, node)
    assert task is not None
    assert complete(api, node, task, upload(api, task, _pth(tmp_path, 2))).status_code == 200
    wait_status(api, api.alice, job_id, "succeeded")
    evaluation = claim(api, node)
    assert evaluation is not None and evaluation["kind"] == "evaluate"
    _fail(api, node, evaluation, "nonzero_exit")
    body = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    assert body["job"]["status"] == "succeeded" and body["rounds"][0]["held_out"] is None
    assert [t["status"] for t in body["tasks"] if t["kind"] == "evaluate"] == ["failed"]
    # the script and the test data go together
    del files["test_data"]
    r = submit(api, api.alice, config, files=files)
    assert r.status_code == 422 and r.json()["field"] == "test_data", r.text


def test_an_init_model_is_every_shards_round_0_input_and_fixes_its_shapes(
    api: Api, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    start = state(42)
    save_file(start, str(tmp_path / "start.safetensors"))
    files = {
        "train_py": ("train.py", TRAIN),
        "data": ("d.csv", CSV.encode()),
        "init_model": ("start.safetensors", (tmp_path / "start.safetensors").read_bytes()),
    }
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 2}, files=files).json()["job"]["id"]
    detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    assert detail["rounds"][0]["input_model_sha256"] is not None
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None and task["round"] == 0 and task["init_model"] is not None
    got = torch.load(
        io.BytesIO(api.client.get(task["init_model"]["url"]).content), weights_only=True
    )
    assert set(got) == set(start) and all(torch.equal(got[k], start[k]) for k in start)
    # an update with other shapes than the starting model is refused
    other = {"w": torch.zeros(3)}
    r = complete(
        api, node, task, upload(api, task, write_pth(tmp_path / "o.pth", other).read_bytes())
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_weights", r.text
    # a hostile starting model is refused up front, naming the field, and nothing is stored
    marker = tmp_path / "pwned"
    bomb = write_pickle_bomb(tmp_path / "evil.pth", marker).read_bytes()
    files["init_model"] = ("evil.pth", bomb)
    r = submit(api, api.alice, {"rounds": 1, "shards": 2}, files=files)
    assert r.status_code == 422 and r.json()["field"] == "init_model", r.text
    assert not marker.exists()
    assert len(api.client.get("/jobs/", headers=api.alice).json()) == 1


def test_a_node_cannot_complete_with_a_file_uploaded_for_another_task(
    api: Api, tmp_path: Path
) -> None:
    submit(api, api.alice)
    honest, freerider = register(api, api.alice, "honest"), register(api, api.alice, "lazy")
    t0, t1 = claim(api, honest), claim(api, freerider)
    assert t0 is not None and t1 is not None
    sha0 = upload(api, t0, _pth(tmp_path, 1))
    r = complete(api, freerider, t1, sha0)
    assert r.status_code == 422 and "upload_url" in r.json()["message"]
    assert complete(api, honest, t0, sha0).status_code == 200


def test_reissued_task_fences_the_first_holder(api: Api, tmp_path: Path) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 1}).json()["job"]["id"]
    a, b = register(api, api.alice, "a"), register(api, api.alice, "b")
    first = claim(api, a)
    assert first is not None
    api.clock.advance(api.settings.lease_s + 1)
    second = claim(api, b)
    assert second is not None and second["task_id"] == first["task_id"]
    # the zombie cannot even download or upload through its old links (not yet expired), nor
    # complete; the new holder's links work
    r = api.client.get(first["code"]["url"])
    assert r.status_code == 403 and "lease" in r.json()["message"]
    assert api.client.get(second["code"]["url"]).status_code == 200
    r = api.client.put(first["upload_url"], content=_pth(tmp_path, 1))
    assert r.status_code == 409
    sha = upload(api, second, _pth(tmp_path, 2))
    assert complete(api, a, first, sha).status_code == 409
    assert complete(api, b, second, sha).status_code == 200
    detail = wait_status(api, api.alice, job_id, "succeeded")
    hist = detail["tasks"][0]["history"]
    assert [h["outcome"] for h in hist] == ["lease_expired", "succeeded"]


def test_pickle_payload_is_refused_with_no_side_effect(api: Api, tmp_path: Path) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 1, "max_attempts": 2}).json()["job"][
        "id"
    ]
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None
    marker = tmp_path / "pwned"
    sha = upload(api, task, write_pickle_bomb(tmp_path / "evil.pth", marker).read_bytes())
    r = complete(api, node, task, sha)
    assert r.status_code == 422
    assert r.json()["code"] == "invalid_weights" and "weights_only" in r.json()["message"]
    assert not marker.exists()
    detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    t = detail["tasks"][0]
    # the same script on the same data writes the same file: not tried again
    assert t["status"] == "failed" and t["error_code"] == "invalid_weights" and t["attempts"] == 1
    assert detail["rounds"][0]["output_model_sha256"] is None


def _nan(tmp_path: Path, seed: int) -> bytes:
    sd = state(seed)
    sd["fc.weight"][0, 0] = float("nan")
    return write_pth(tmp_path / f"nan{seed}.pth", sd).read_bytes()


def _claim_shard(api: Api, node: dict[str, str], shard: int) -> dict[str, Any]:
    """Claim until the task of `shard` comes (others are held, never completed here)."""
    deadline = time.monotonic() + 30
    while True:
        task = claim(api, node)
        if task is not None and task["shard"] == shard:
            return task
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_holder_whose_update_is_nan_fails_a_fedavg_job_at_once_naming_it(
    api: Api, tmp_path: Path
) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 2, "max_attempts": 3}).json()["job"][
        "id"
    ]
    node = register(api, api.alice)
    task = _claim_shard(api, node, 1)
    r = complete(api, node, task, upload(api, task, _nan(tmp_path, 1)))
    assert r.status_code == 422 and "NaN" in r.json()["message"]
    detail = wait_status(api, api.alice, job_id, "failed")
    failed = next(t for t in detail["tasks"] if t["shard"] == 1)
    assert failed["attempts"] == 1  # one try: a retry would write the same file
    error = detail["job"]["error"]
    assert re.search(
        r"shard 1 \(\d+ rows\) failed after 1 attempt\(s\): \[invalid_weights\]", error
    )


@pytest.mark.parametrize("strategy", [{"name": "fedmedian"}, {"name": "trimmed_mean", "beta": 0.0}])
def test_under_a_robust_rule_a_nan_holder_is_left_out_and_recorded(
    api: Api, tmp_path: Path, strategy: dict[str, Any]
) -> None:
    config = {"rounds": 2, "shards": 3, "max_attempts": 3, "strategy": strategy}
    job_id = submit(api, api.alice, config).json()["job"]["id"]
    node = register(api, api.alice)
    for rnd in range(2):
        seen = 0
        deadline = time.monotonic() + 30
        while seen < 3:
            task = claim(api, node)
            if task is None or task["round"] != rnd:
                assert time.monotonic() < deadline
                time.sleep(0.05)
                continue
            bad = task["shard"] == 2
            payload = _nan(tmp_path, rnd) if bad else _pth(tmp_path, 10 * rnd + task["shard"])
            r = complete(api, node, task, upload(api, task, payload))
            assert r.status_code == (422 if bad else 200), r.text
            seen += 1
    detail = wait_status(api, api.alice, job_id, "succeeded")
    for r in detail["rounds"]:
        assert len(r["excluded"]) == 1, r
        assert re.match(r"shard 2 \(\d+ rows\): \[invalid_weights\] .*NaN", r["excluded"][0])
    assert {t["status"] for t in detail["tasks"] if t["shard"] == 2} == {"failed"}


def test_a_failure_that_repeats_itself_is_not_tried_again(api: Api) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 1, "max_attempts": 5}).json()["job"][
        "id"
    ]
    node = register(api, api.alice)
    for _ in range(2):
        task = claim(api, node)
        assert task is not None
        _fail(api, node, task, "nonzero_exit")
    detail = wait_status(api, api.alice, job_id, "failed")
    assert detail["tasks"][0]["attempts"] == 2  # not 5: the second ended as the first did


def test_two_rounds_of_fedavg_end_to_end(api: Api, tmp_path: Path) -> None:
    job_id = submit(api, api.alice, {"rounds": 2, "shards": 2}).json()["job"]["id"]
    node = register(api, api.alice)
    rows = {}
    expected_r0 = torch.empty(0)
    for rnd in range(2):
        results = {}
        for _ in range(2):
            task = claim(api, node)
            assert task is not None and task["round"] == rnd
            assert (task["init_model"] is None) == (rnd == 0)
            if rnd == 1:  # the round's input is round 0's average
                init = api.client.get(task["init_model"]["url"]).content
                got = torch.load(io.BytesIO(init), weights_only=True)
                assert torch.allclose(got["fc.weight"], expected_r0, atol=1e-6)
            sd = state(task["shard"] + 10 * rnd)
            results[task["shard"]] = sd
            sha = upload(
                api, task, write_pth(tmp_path / f"{rnd}{task['shard']}.pth", sd).read_bytes()
            )
            metrics = {"loss": 1.0 + task["shard"], "samples": 10.0}
            r = complete(api, node, task, sha, metrics=metrics)
            assert r.status_code == 200, r.text
        if rnd == 0:
            detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
            rows = {t["shard"]: t["rows"] for t in detail["tasks"]}
            w0 = rows[0] / (rows[0] + rows[1])
            expected_r0 = (
                results[0]["fc.weight"].double() * w0 + results[1]["fc.weight"].double() * (1 - w0)
            ).float()
            deadline_detail = wait_round(api, job_id, 0)
            first = deadline_detail["rounds"][0]
            assert first["metrics"]["loss"] == 1.0 * w0 + 2.0 * (1 - w0)  # row-weighted mean
            assert first["metrics"]["samples"] == 20.0 and first["summed_metrics"] == ["samples"]
    detail = wait_status(api, api.alice, job_id, "succeeded")
    assert [r["status"] for r in detail["rounds"]] == ["done", "done"]
    assert rows == {0: 10, 1: 10}
    r = api.client.get(f"/jobs/{job_id}/model", headers=api.alice)
    assert r.status_code == 200
    final = torch.load(io.BytesIO(r.content), weights_only=True)
    assert set(final) == {"fc.weight", "fc.bias", "bn.num_batches_tracked"}
    r = api.client.get(f"/jobs/{job_id}/model?format=safetensors", headers=api.alice)
    assert r.status_code == 200 and len(r.content) > 0
    assert api.client.get(f"/jobs/{job_id}/model?format=onnx", headers=api.alice).status_code in (
        400,
        422,
    )


def wait_round(api: Api, job_id: str, idx: int) -> dict:
    import time

    for _ in range(600):
        body = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
        if any(r["index"] == idx and r["status"] == "done" for r in body["rounds"]):
            return body
        time.sleep(0.05)
    raise AssertionError("round did not finish")


def test_cancel_stops_running_tasks_at_the_next_heartbeat(api: Api, tmp_path: Path) -> None:
    job_id = submit(api, api.alice).json()["job"]["id"]
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None
    r = api.client.post("/agent/heartbeat", json={"running": [task["task_id"]]}, headers=node)
    assert r.json()["cancel"] == []
    r = api.client.post(f"/jobs/{job_id}/cancel", headers=api.alice)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = api.client.post("/agent/heartbeat", json={"running": [task["task_id"]]}, headers=node)
    assert r.json()["cancel"] == [task["task_id"]]
    assert claim(api, node) is None
    sha = upload_or_none(api, task, _pth(tmp_path, 1))
    assert sha is None
    assert api.client.post(f"/jobs/{job_id}/cancel", headers=api.alice).status_code == 409
    assert api.client.get(f"/jobs/{job_id}/model", headers=api.alice).status_code == 409


def upload_or_none(api: Api, task: dict, payload: bytes) -> str | None:
    r = api.client.put(task["upload_url"], content=payload)
    return r.json()["sha256"] if r.status_code == 201 else None


def test_a_running_tasks_output_arrives_with_heartbeats_and_stays_after_it(
    api: Api, tmp_path: Path
) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 1}).json()["job"]["id"]
    node = register(api, api.alice)
    other = register(api, api.bob, "other")
    task = claim(api, node)
    assert task is not None
    for chunk in ("epoch 1 loss 0.9\n", "epoch 2 loss 0.5\n"):
        beat = {"running": [task["task_id"]], "output": chunk}
        assert api.client.post("/agent/heartbeat", headers=node, json=beat).status_code == 200
    # a node writing into a task it does not hold changes nothing
    forged = {"running": [task["task_id"]], "output": "forged line\n"}
    assert api.client.post("/agent/heartbeat", headers=other, json=forged).status_code == 200
    deadline = time.monotonic() + 30
    while True:
        body = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
        live = body["tasks"][0]["history"][0]["stderr_tail"] or ""
        if "epoch 2" in live:
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.1)
    assert live == "epoch 1 loss 0.9\nepoch 2 loss 0.5\n"
    sha = upload(api, task, _pth(tmp_path, 1))
    r = complete(api, node, task, sha, output_tail="epoch 1 loss 0.9\nepoch 2 loss 0.5\ndone\n")
    assert r.status_code == 200, r.text
    body = wait_status(api, api.alice, job_id, "succeeded")
    assert body["tasks"][0]["history"][0]["stderr_tail"].endswith("done\n")


def test_capabilities_a_node_reports_later_decide_what_it_may_claim(api: Api) -> None:
    submit(api, api.alice, {"rounds": 1, "shards": 1, "require_docker": True})
    node = register(api, api.alice)
    assert claim(api, node) is None  # registered without Docker
    caps = {"docker": True, "sandbox": "strong", "cpus": 2, "memory_mb": 2048, "arch": "x86_64"}
    r = api.client.post("/agent/heartbeat", json={"capabilities": caps}, headers=node)
    assert r.status_code == 200, r.text
    task = claim(api, node)  # the same replica, its cache of the node refreshed
    assert task is not None
    nodes = api.client.get("/nodes", headers=api.alice).json()
    assert nodes[0]["capabilities"]["docker"] is True


def test_a_completion_can_bring_the_nodes_next_task_in_the_same_answer(
    api: Api, tmp_path: Path
) -> None:
    """`next`: one call finishes a task and leases the next ready one to the same node (what a
    `request_task` would have given); none ready, a draining node or a stale lease: none."""
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 3}).json()["job"]["id"]
    node = register(api, api.alice, "busy")
    task = claim(api, node)
    assert task is not None
    seen = [task["shard"]]
    for i in range(3):
        r = complete(api, node, task, upload(api, task, _pth(tmp_path, i)), next_task=True)
        assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
        following = r.json()["next_task"]
        if i == 2:
            assert following is None  # the round's three shards are done
            break
        assert following["job_id"] == job_id and following["lease_token"], following
        seen.append(following["shard"])
        task = following
    assert sorted(seen) == [0, 1, 2]
    done = [t for t in _snapshot(api, job_id)["tasks"] if t["status"] == "succeeded"]
    assert len(done) == 3
    # a draining node finishes what it holds and gets nothing with it
    second = submit(api, api.alice, {"rounds": 1, "shards": 2}).json()["job"]["id"]
    task = claim(api, node)
    assert task is not None and task["job_id"] == second
    node_id = next(n["id"] for n in api.client.get("/nodes", headers=api.alice).json())
    r = api.client.post(f"/nodes/{node_id}/drain", json={"drain": True}, headers=api.alice)
    assert r.status_code == 200
    r = complete(api, node, task, upload(api, task, _pth(tmp_path, 7)), next_task=True)
    assert r.status_code == 200 and r.json()["next_task"] is None
    assert claim(api, node) is None  # (and none is leased behind its back)

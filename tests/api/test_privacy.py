"""Differentially private jobs through the real API: epsilon per round as `dp-accounting`'s RDP
accountant computes it, a budget that stops the job with the last affordable model, configs
the noise calibration cannot serve, and client-side clipping checked by the coordinator."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from tests.api.helpers import CSV, TRAIN, claim, complete, register, submit, upload
from tests.support.api import Api


def _rdp_epsilon(z: float, rounds: int, delta: float) -> float:
    """dp-accounting called directly."""
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(z), rounds))
    return float(accountant.get_epsilon(delta))


def _pth(path: Path, value: float) -> bytes:
    torch.save({"w": torch.full((8,), value)}, path)
    return path.read_bytes()


def _files(tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    return {
        "train_py": ("train.py", TRAIN),
        "data": ("d.csv", CSV.encode()),
        "init_model": ("start.pth", _pth(tmp_path / "start.pth", 0.0)),
    }


def _finished(api: Api, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
        if body["job"]["status"] not in ("queued", "running", "aggregating"):
            return dict(body)
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_epsilon_per_round_is_the_accountants_and_the_budget_stops_the_job(
    api: Api, tmp_path: Path
) -> None:
    z, delta = 2.0, 1e-3
    budget = (_rdp_epsilon(z, 3, delta) + _rdp_epsilon(z, 4, delta)) / 2  # 3 rounds fit, not 4
    dp = {"noise_multiplier": z, "clip_norm": 1.0, "delta": delta, "max_epsilon": budget}
    r = submit(api, api.alice, {"rounds": 10, "shards": 2, "dp": dp}, _files(tmp_path))
    assert r.status_code == 201, r.text
    job_id = r.json()["job"]["id"]
    node = register(api, api.alice)
    for rnd in range(3):
        for _ in range(2):
            task = claim(api, node)
            assert task is not None and task["round"] == rnd, task
            sha = upload(api, task, _pth(tmp_path / "u.pth", 0.1 * (rnd + 1)))
            assert complete(api, node, task, sha).status_code == 200
        if rnd < 2:
            while (body := api.client.get(f"/jobs/{job_id}", headers=api.alice).json())["job"][
                "current_round"
            ] == rnd and body["job"]["status"] != "failed":
                time.sleep(0.05)
    body = _finished(api, job_id)
    assert body["job"]["status"] == "succeeded", body["job"]
    assert "stopped after round 3 of 10" in body["job"]["error"], body["job"]
    assert [r["index"] for r in body["rounds"]] == [0, 1, 2]
    for r in body["rounds"]:
        assert r["epsilon"] == pytest.approx(_rdp_epsilon(z, r["index"] + 1, delta), rel=1e-9)
    assert body["rounds"][-1]["epsilon"] <= budget < _rdp_epsilon(z, 4, delta)
    assert body["delta"] == delta
    assert claim(api, node) is None
    # the final model exists in both formats, as for any finished job
    got = api.client.get(f"/jobs/{job_id}/model?format=safetensors", headers=api.alice)
    assert got.status_code == 200


def test_the_default_delta_is_one_over_the_rows(api: Api, tmp_path: Path) -> None:
    dp = {"noise_multiplier": 1.0, "clip_norm": 1.0}
    r = submit(api, api.alice, {"rounds": 1, "shards": 2, "dp": dp}, _files(tmp_path))
    assert r.status_code == 201, r.text
    assert r.json()["delta"] == pytest.approx(1 / 20)  # CSV has 20 rows


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"strategy": "fedmedian"}, "strategy"),
        ({"strategy": {"name": "krum", "f": 0}}, "strategy"),
        ({"strategy": {"name": "fedavg", "clip_norm": 2.0}}, "strategy.clip_norm"),
        ({"dp": {"noise_multiplier": 0.1, "clip_norm": 1, "max_epsilon": 0.5}}, "dp.max_epsilon"),
    ],
)
def test_dp_configs_its_guarantee_cannot_hold_for_are_refused(
    api: Api, tmp_path: Path, config: dict[str, Any], field: str
) -> None:
    full = {"rounds": 2, "shards": 4, "dp": {"noise_multiplier": 1.0, "clip_norm": 1.0}, **config}
    r = submit(api, api.alice, full, _files(tmp_path))
    assert r.status_code == 422, r.text
    body = r.json()
    assert field in [e["field"] for e in body["errors"]] or body["field"] == field, body


def test_dp_without_a_model_to_clip_round_0_against_is_refused(api: Api) -> None:
    dp = {"noise_multiplier": 1.0, "clip_norm": 1.0}
    r = submit(api, api.alice, {"rounds": 1, "shards": 2, "init_step": False, "dp": dp})
    assert r.status_code == 422 and r.json()["field"] == "dp", r.text


def test_client_clipping_is_asked_of_nodes_and_checked(api: Api, tmp_path: Path) -> None:
    dp = {"noise_multiplier": 1.0, "clip_norm": 1.0, "delta": 1e-3, "client_clip": True}
    r = submit(api, api.alice, {"rounds": 1, "shards": 2, "dp": dp}, _files(tmp_path))
    assert r.status_code == 201, r.text
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None and task["client_clip"] == 1.0
    # an update of norm 0.9 * sqrt(8) > 1 (the start is all zeros): refused, not clipped
    too_big = upload(api, task, _pth(tmp_path / "big.pth", 0.9))
    refused = complete(api, node, task, too_big)
    assert refused.status_code == 422, refused.text
    assert "over the job's clip_norm" in refused.json()["message"]
    again = claim(api, node)
    assert again is not None and again["shard"] == task["shard"]  # the shard is reissued
    fine = upload(api, again, _pth(tmp_path / "ok.pth", 0.3))  # norm 0.3 * sqrt(8) < 1
    assert complete(api, node, again, fine).status_code == 200

"""A compressed job through the real API: nodes are told the encoding, their updates are decoded
onto the round's model before any check, a hostile one fails its attempt with the reason, a
retried completion is recognised, and the bytes sent are counted per task, round and job."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from gridx.coordinator.aggregation.weights import load_state
from gridx.node import task_wrapper
from tests.api.helpers import CSV, TRAIN, claim, complete, register, submit, upload
from tests.support.api import Api

START = {"w": torch.zeros(1000), "steps": torch.tensor(0)}


def _files(tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    torch.save(START, tmp_path / "start.pth")
    return {
        "train_py": ("train.py", TRAIN),
        "data": ("d.csv", CSV.encode()),
        "init_model": ("start.pth", (tmp_path / "start.pth").read_bytes()),
    }


def _update(tmp_path: Path, value: float, spec: str = "int8") -> bytes:
    new = {"w": torch.full((1000,), value), "steps": torch.tensor(1)}
    tensors, metadata, _ = task_wrapper.encode(new, START, spec, None)
    path = tmp_path / f"update-{value}"
    task_wrapper.write_safetensors(str(path), tensors, metadata)
    return path.read_bytes()


def _detail(api: Api, job_id: str, done: bool = False) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body = dict(api.client.get(f"/jobs/{job_id}", headers=api.alice).json())
        if not done or body["job"]["status"] == "succeeded" or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_compressed_updates_are_decoded_merged_and_counted(api: Api, tmp_path: Path) -> None:
    r = submit(api, api.alice, {"rounds": 1, "shards": 2, "compress": "int8"}, _files(tmp_path))
    assert r.status_code == 201, r.text
    job_id = r.json()["job"]["id"]
    node = register(api, api.alice)
    first = claim(api, node)
    assert first is not None and first["compress"] == "int8"
    sizes = []
    for value in (0.5, 1.5):
        task = first if value == 0.5 else claim(api, node)
        assert task is not None
        payload = _update(tmp_path, value)
        sizes.append(len(payload))
        sha = upload(api, task, payload)
        assert complete(api, node, task, sha).status_code == 200
        again = complete(api, node, task, sha)  # a retry: the same answer, nothing changes
        assert again.status_code == 200 and again.json()["status"] == "succeeded", again.text
    body = _detail(api, job_id, done=True)
    assert body["job"]["status"] == "succeeded", body["job"]
    # the merge is the mean of the decoded models: w = 1.0 everywhere, steps = 1
    sha = body["final_safetensors_sha256"]
    final = api.client.get(f"/jobs/{job_id}/model?format=safetensors", headers=api.alice)
    assert final.status_code == 200 and sha
    (tmp_path / "final.st").write_bytes(final.content)
    model = load_state(tmp_path / "final.st", 1 << 30)
    torch.testing.assert_close(model["w"], torch.ones(1000), atol=1e-6, rtol=0)
    assert int(model["steps"]) == 1
    done = [t for t in body["tasks"] if t["status"] == "succeeded"]
    assert sorted(t["uploaded_bytes"] for t in done) == sorted(sizes)
    assert sizes[0] < 0.27 * 4000 + 400  # int8: a quarter of the floats, and a header
    assert body["rounds"][-1]["uploaded_bytes"] == body["uploaded_bytes"] >= sum(sizes)


def test_a_hostile_update_fails_its_attempt_with_the_reason(api: Api, tmp_path: Path) -> None:
    r = submit(api, api.alice, {"rounds": 1, "shards": 2, "compress": "int8"}, _files(tmp_path))
    assert r.status_code == 201, r.text
    node = register(api, api.alice)
    first = claim(api, node)
    assert first is not None
    # NaN scales
    tensors, metadata, _ = task_wrapper.encode(
        {"w": torch.ones(1000), "steps": torch.tensor(1)}, START, "int8", None
    )
    tensors["s:w"][0] = float("nan")
    task_wrapper.write_safetensors(str(tmp_path / "bad"), tensors, metadata)
    refused = complete(api, node, first, upload(api, first, (tmp_path / "bad").read_bytes()))
    assert refused.status_code == 422, refused.text
    assert "finite and non-negative" in refused.json()["message"]


def test_compression_settings_are_checked(api: Api) -> None:
    for config, words in (
        ({"compress": "int2"}, "compress"),
        ({"compress": "topk:0.0"}, "above 0"),
        ({"compress": "topk:0.01", "replicas": 2}, "replicas must be 1"),
    ):
        r = submit(api, api.alice, {"rounds": 1, "shards": 2, **config})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "compress" and words in r.text, r.text

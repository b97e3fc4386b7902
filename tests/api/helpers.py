"""Calls the API tests make again and again."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from tests.support.api import Api, auth

TRAIN = b"import torch\ntorch.save({}, 'model.pth')\n"
CSV = "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20))


def submit(
    api: Api,
    who: dict[str, str],
    config: dict[str, Any] | None = None,
    files: dict[str, tuple[str, bytes]] | None = None,
) -> Any:
    """POST /jobs/ and return the response. These tests drive the lease machinery by hand, so
    their jobs skip the initialisation step unless the config asks for it."""
    files = (
        files
        if files is not None
        else {"train_py": ("train.py", TRAIN), "data": ("d.csv", CSV.encode())}
    )
    return api.client.post(
        "/jobs/",
        headers=who,
        files={k: (n, io.BytesIO(b)) for k, (n, b) in files.items()},
        data={"config": json.dumps({"init_step": False, **(config or {"rounds": 1, "shards": 2})})},
    )


def register(api: Api, who: dict[str, str], name: str = "n") -> dict[str, str]:
    """Enrol a node; returns its auth header."""
    r = api.client.post("/agent/register", json={"name": name}, headers=who)
    assert r.status_code == 201, r.text
    return auth(r.json()["node_token"])


def claim(api: Api, node: dict[str, str]) -> dict[str, Any] | None:
    """One non-waiting claim."""
    r = api.client.post("/agent/request_task?wait_s=0", headers=node)
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def upload(api: Api, task: dict[str, Any], payload: bytes) -> str:
    """PUT a result through the task's signed URL; returns its sha256."""
    r = api.client.put(task["upload_url"], content=payload)
    assert r.status_code == 201, r.text
    return str(r.json()["sha256"])


def complete(
    api: Api,
    node: dict[str, str],
    task: dict[str, Any],
    sha: str,
    token: str | None = None,
    metrics: dict[str, float] | None = None,
    duration_s: float = 0.0,
    output_tail: str = "",
    next_task: bool = False,
) -> Any:
    """POST /agent/complete_task (`duration_s`: the run time the node claims; `output_tail`:
    the end of what the task printed; `next_task`: lease the next one in the same call)."""
    return api.client.post(
        "/agent/complete_task",
        headers=node,
        json={
            "task_id": task["task_id"],
            "lease_token": token or task["lease_token"],
            "result_sha256": sha,
            "metrics": metrics or {},
            "duration_s": duration_s,
            "output_tail": output_tail,
            "next": next_task,
        },
    )


def fail(
    api: Api,
    node: dict[str, str],
    task: dict[str, Any],
    code: str,
    message: str = "train.py finished but wrote no model.pth",
    stderr_tail: str = "",
) -> Any:
    """POST /agent/fail_task: the task's script failed (`user_error`)."""
    return api.client.post(
        "/agent/fail_task",
        headers=node,
        json={
            "task_id": task["task_id"],
            "lease_token": task["lease_token"],
            "kind": "user_error",
            "code": code,
            "message": message,
            "stderr_tail": stderr_tail,
        },
    )


def wait_status(
    api: Api, who: dict[str, str], job_id: str, status: str, timeout: float = 60
) -> Any:
    """Poll a job until it reaches `status`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = api.client.get(f"/jobs/{job_id}", headers=who).json()
        if body["job"]["status"] == status:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stuck at {body['job']['status']}")


def read(path: Path) -> bytes:
    return path.read_bytes()

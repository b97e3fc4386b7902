"""Storage that does not grow for ever, through the real app on SQLite and PostgreSQL: merged
rounds let go of their updates, ended jobs of their data and intermediate models, deleted jobs
of everything only they used; a blob two jobs share survives the deletion of one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gridx.coordinator.settings import Settings
from tests.api.helpers import claim, complete, register, submit, upload, wait_status
from tests.support.api import Api, audit
from tests.weightfiles import state, write_pth


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Sweep often and at once (the manual clock is moved past each write)."""
    return msgspec.structs.replace(settings, sweep_s=0.05, sweep_grace_s=0.0)


def _blobs(api: Api) -> int:
    text = api.client.get("/metrics").text
    return int(
        next(line.split()[1] for line in text.splitlines() if line.startswith("gridx_blobs "))
    )


def _settle(api: Api, expected: int) -> None:
    """Move the clock past every write, and wait for the sweeper to reach `expected` blobs."""
    api.clock.advance(1)
    deadline = time.monotonic() + 30
    while (n := _blobs(api)) != expected:
        assert time.monotonic() < deadline, f"{n} blobs, expected {expected}"
        time.sleep(0.05)


def _run(api: Api, tmp_path: Path, job_id: str, node: dict[str, str], rounds: int) -> Any:
    for rnd in range(rounds):
        for _ in range(2):
            task = claim(api, node)
            deadline = time.monotonic() + 30
            while task is None:  # the previous round is being merged
                assert time.monotonic() < deadline
                time.sleep(0.05)
                task = claim(api, node)
            sd = state(task["shard"] + 10 * rnd + hash(job_id) % 1000)
            sha = upload(api, task, write_pth(tmp_path / f"{job_id}{rnd}.pth", sd).read_bytes())
            assert complete(api, node, task, sha).status_code == 200
    return wait_status(api, api.alice, job_id, "succeeded")


def test_an_ended_job_keeps_its_code_and_final_model_only(api: Api, tmp_path: Path) -> None:
    node = register(api, api.alice)
    job_id = submit(api, api.alice, {"rounds": 3, "shards": 2}).json()["job"]["id"]
    _run(api, tmp_path, job_id, node, 3)
    _settle(api, 3)  # train.py, final_model.pth, final_model.safetensors
    detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    assert detail["storage_bytes"] > 0 and detail["final_model_sha256"]
    assert api.client.get(f"/jobs/{job_id}/model", headers=api.alice).status_code == 200
    # keep_updates: 6 updates and the 2 intermediate round models stay (and shards go)
    kept = submit(api, api.alice, {"rounds": 3, "shards": 2, "keep_updates": True})
    _run(api, tmp_path, kept.json()["job"]["id"], node, 3)
    _settle(api, 3 + 2 + 6 + 2)  # its final .pth/.safetensors, 6 updates, 2 round models


def test_deleting_a_job_frees_what_only_it_used_and_spares_a_running_job(
    api: Api, tmp_path: Path
) -> None:
    node = register(api, api.alice)
    first = submit(api, api.alice, {"rounds": 1, "shards": 2}).json()["job"]["id"]
    _run(api, tmp_path, first, node, 1)
    # the second job has the same train.py (one blob) and is running when the first goes
    second = submit(api, api.alice, {"rounds": 2, "shards": 2}).json()["job"]["id"]
    task = claim(api, node)
    assert task is not None and task["job_id"] == second
    assert api.client.delete(f"/jobs/{second}", headers=api.alice).status_code == 409
    assert api.client.delete(f"/jobs/{first}", headers=api.bob).status_code == 404
    assert api.client.delete(f"/jobs/{first}", headers=api.alice).status_code == 204
    assert api.client.get(f"/jobs/{first}", headers=api.alice).status_code == 404
    api.clock.advance(1)
    # the shared train.py is still there for the running job, and its task finishes
    assert api.client.get(task["code"]["url"]).status_code == 200
    sha = upload(api, task, write_pth(tmp_path / "t.pth", state(1)).read_bytes())
    assert complete(api, node, task, sha).status_code == 200
    _run_rest(api, tmp_path, second, node)
    _settle(api, 3)  # the second job's train.py and final models; nothing of the first
    actions = [e["action"] for e in audit(api)]
    assert actions == ["job.delete"]


def _run_rest(api: Api, tmp_path: Path, job_id: str, node: dict[str, str]) -> None:
    """Finish a job whose first task is done (3 tasks left: 1 + 2)."""
    done = 0
    deadline = time.monotonic() + 60
    while done < 3:
        assert time.monotonic() < deadline
        task = claim(api, node)
        if task is None:
            time.sleep(0.05)
            continue
        sha = upload(api, task, write_pth(tmp_path / f"r{done}.pth", state(done)).read_bytes())
        assert complete(api, node, task, sha).status_code == 200
        done += 1
    wait_status(api, api.alice, job_id, "succeeded")


def test_an_upload_that_would_fill_the_disk_is_refused_with_the_setting_named(
    settings: Settings,
) -> None:
    from tests.support.api import running_api

    full = msgspec.structs.replace(settings, min_free_mb=1 << 40)  # a petabyte free, please
    with running_api(full) as api:
        r = submit(api, api.alice)
        assert r.status_code == 507 and r.json()["code"] == "storage_full"
        assert "GRIDX_MIN_FREE_MB" in r.json()["message"]
        assert api.client.get("/jobs/", headers=api.alice).json() == []


def test_ended_jobs_past_the_retention_are_deleted_on_schedule(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.support.api import running_api

    with running_api(msgspec.structs.replace(settings, retention_days=1.0)) as api:
        node = register(api, api.alice)
        job_id = submit(api, api.alice, {"rounds": 1, "shards": 2}).json()["job"]["id"]
        _run(api, tmp_path, job_id, node, 1)
        api.clock.advance(3600)  # an hour on: kept
        time.sleep(0.5)
        assert api.client.get(f"/jobs/{job_id}", headers=api.alice).status_code == 200
        api.clock.advance(86_400)  # past a day: deleted, with everything only it used
        deadline = time.monotonic() + 30
        while api.client.get(f"/jobs/{job_id}", headers=api.alice).status_code != 404:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _settle(api, 0)
        assert [(e["actor"], e["action"], e["target"]) for e in audit(api)] == [
            ("retention", "job.delete", job_id)
        ]


def _archive(folder: Path, kind: str) -> bytes:
    """Two 2 MiB members in a few KiB: zeros compressed, or holes in a sparse tar."""
    src = folder / f"src-{kind}"
    (src / "cat").mkdir(parents=True)
    for name in ("a.bin", "b.bin"):
        with (src / "cat" / name).open("wb") as fh:
            fh.truncate(2 << 20)
    out = folder / f"data.{kind}"
    flags = ["-czf"] if kind == "tar.gz" else ["--sparse", "-cf"]
    subprocess.run(["tar", *flags, str(out), "-C", str(src), "cat"], check=True)
    return out.read_bytes()


@pytest.mark.parametrize("kind", ["tar.gz", "tar"])
def test_what_a_split_would_write_counts_against_the_owners_quota(
    settings: Settings, tmp_path: Path, kind: str
) -> None:
    from tests.support.api import running_api

    with running_api(msgspec.structs.replace(settings, user_quota_mb=1)) as api:
        small = _archive(tmp_path, kind)
        assert len(small) < 64 << 10  # the request itself is far under the quota
        files = {"train_py": ("train.py", b"print(1)\n"), "data": (f"d.{kind}", small)}
        r = submit(api, api.alice, {"rounds": 1, "shards": 2}, files)
        assert r.status_code == 413 and r.json()["code"] == "quota_exceeded", r.text
        assert "GRIDX_USER_QUOTA_MB" in r.json()["message"]
        assert api.client.get("/jobs/", headers=api.alice).json() == []
        stored = [p for p in (settings.data_dir / "blobs").rglob("*") if p.is_file()]
        assert sum(p.stat().st_size for p in stored) < 1 << 20, stored  # no shard was written
        # a job that fits is taken, and only its owner's figure counts it
        assert submit(api, api.alice).status_code == 201
        mine = api.client.get("/stats/overview", headers=api.alice).json()["storage_bytes"]
        theirs = api.client.get("/stats/overview", headers=api.bob).json()["storage_bytes"]
        assert mine > 0 and theirs == 0


def test_every_response_carries_the_browser_hardening_headers(api: Api) -> None:
    for path in ("/healthz", "/", "/jobs/", "/schema/swagger"):
        r = api.client.get(path, headers=api.alice)
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-frame-options"] == "DENY", path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path


def _merged(api: Api, job_id: str, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        body: dict[str, Any] = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
        if sum(r["status"] == "done" for r in body["rounds"]) >= n:
            return body
        assert time.monotonic() < deadline, body["rounds"]
        time.sleep(0.05)


def test_every_merged_round_downloads_while_it_runs_and_the_last_after_a_cancel(
    api: Api, tmp_path: Path
) -> None:
    import io

    import torch

    node = register(api, api.alice)
    job_id = submit(api, api.alice, {"rounds": 3, "shards": 1}).json()["job"]["id"]
    for r in range(2):
        task = claim(api, node)
        assert task is not None
        sha = upload(api, task, write_pth(tmp_path / f"r{r}.pth", state(r + 1)).read_bytes())
        assert complete(api, node, task, sha).status_code == 200
        _merged(api, job_id, r + 1)
        got = api.client.get(f"/jobs/{job_id}/model?round={r}", headers=api.alice)
        assert got.status_code == 200, got.text  # round r's checkpoint, while the job runs
        model = torch.load(io.BytesIO(got.content), weights_only=True)
        assert all(torch.equal(v, state(r + 1)[k]) for k, v in model.items())
    ahead = api.client.get(f"/jobs/{job_id}/model?round=2", headers=api.alice)
    assert ahead.status_code == 409 and "not merged yet" in ahead.json()["message"]
    assert api.client.post(f"/jobs/{job_id}/cancel", headers=api.alice).status_code == 200
    final = api.client.get(f"/jobs/{job_id}/model", headers=api.alice)
    assert final.status_code == 409 and "--round 2" in final.json()["message"], final.text
    kept = api.client.get(f"/jobs/{job_id}/model?round=1", headers=api.alice)
    assert kept.status_code == 200  # a cancelled job keeps its last merged round
    gone = api.client.get(f"/jobs/{job_id}/model?round=0", headers=api.alice)
    assert gone.status_code == 404 and "keep_rounds" in gone.json()["message"]

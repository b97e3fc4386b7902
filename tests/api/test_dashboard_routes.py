"""Routes behind the dashboard: overview, contributors, draining, live streams."""

from __future__ import annotations

import json

import msgspec

from tests.api.helpers import claim, complete, register, submit, upload, wait_status
from tests.support.api import Api
from tests.weightfiles import state, write_pth


def test_overview_counts_only_the_callers_jobs_and_nodes(api: Api) -> None:
    submit(api, api.alice)
    register(api, api.alice, "a1")
    body = api.client.get("/stats/overview", headers=api.alice).json()
    assert body["jobs_by_status"] == {"queued": 1}
    assert body["tasks_queued"] == 2 and body["tasks_running"] == 0
    assert body["nodes_online"] == 1 and body["nodes_offline"] == 0
    other = api.client.get("/stats/overview", headers=api.bob).json()
    assert other["jobs_by_status"] == {} and other["nodes_online"] == 0
    assert api.client.get("/stats/overview").status_code == 401


def test_a_drained_node_gets_no_work_until_undrained(api: Api) -> None:
    submit(api, api.alice)
    node = register(api, api.alice, "pi")
    node_id = api.client.get("/nodes", headers=api.alice).json()[0]["id"]
    assert api.client.post(f"/nodes/{node_id}/drain", json={}, headers=api.bob).status_code == 404
    r = api.client.post(f"/nodes/{node_id}/drain", json={"drain": True}, headers=api.alice)
    assert r.status_code == 200 and r.json()["status"] == "draining"
    assert api.client.post("/agent/heartbeat", json={}, headers=node).json()["drain"] is True
    assert claim(api, node) is None
    api.client.post(f"/nodes/{node_id}/drain", json={"drain": False}, headers=api.alice)
    assert api.client.post("/agent/heartbeat", json={}, headers=node).json()["drain"] is False
    assert claim(api, node) is not None


def test_contributors_get_credit_for_compute_the_coordinator_saw(api: Api, tmp_path) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 1}).json()["job"]["id"]
    node = register(api, api.bob, "bobs-box")
    task = claim(api, node)
    assert task is not None
    api.clock.advance(18)  # under the lease; the coordinator's own measure: lease to completion
    sha = upload(api, task, write_pth(tmp_path / "m.pth", state(1)).read_bytes())
    r = complete(api, node, task, sha, duration_s=40.0)
    assert r.status_code == 200
    wait_status(api, api.alice, job_id, "succeeded")
    rows = api.client.get("/stats/contributors", headers=api.alice).json()
    assert rows == [
        {"owner": "bob@example.org", "nodes": 1, "tasks_done": 1, "compute_s": 18.0, "credit": 0.5}
    ]


def test_job_stream_sends_the_detail_and_ends_when_the_job_is_done(api: Api, tmp_path) -> None:
    job_id = submit(api, api.alice, {"rounds": 1, "shards": 1}).json()["job"]["id"]
    node = register(api, api.alice)
    task = claim(api, node)
    assert task is not None
    sha = upload(api, task, write_pth(tmp_path / "m.pth", state(1)).read_bytes())
    assert complete(api, node, task, sha).status_code == 200
    wait_status(api, api.alice, job_id, "succeeded")
    with api.client.stream("GET", f"/jobs/{job_id}/events", headers=api.alice) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]
    assert events[-1]["job"]["status"] == "succeeded"
    assert api.client.get(f"/jobs/{job_id}/events", headers=api.bob).status_code == 404


def test_metrics_are_exposed_for_prometheus(api: Api) -> None:
    submit(api, api.alice)
    api.client.get("/healthz")
    text = api.client.get("/metrics").text
    assert 'gridx_tasks{state="queued"} 2' in text
    assert 'gridx_jobs{status="queued"} 1' in text
    assert "gridx_leases_expired_total 0" in text
    assert 'gridx_http_requests_total{method="GET",code="2xx"}' in text
    assert "gxk_" not in text


def test_registrations_and_failed_sign_ins_are_rate_limited(api: Api) -> None:
    api.client.app.state.rt.settings = msgspec.structs.replace(
        api.settings, register_per_minute=3, auth_failures_per_minute=5
    )
    codes = [
        api.client.post("/agent/register", json={"name": f"n{i}"}, headers=api.alice).status_code
        for i in range(4)
    ]
    assert codes == [201, 201, 201, 429]
    r = api.client.post("/agent/register", json={"name": "x"}, headers=api.alice)
    assert r.json()["code"] == "rate_limited"
    api.clock.advance(61)
    assert (
        api.client.post("/agent/register", json={"name": "later"}, headers=api.alice).status_code
        == 201
    )
    wrong = [
        api.client.get("/me", headers={"Authorization": "Bearer gxk_guess"}).status_code
        for _ in range(6)
    ]
    assert wrong == [401] * 5 + [429]
    api.clock.advance(61)
    assert api.client.get("/me", headers=api.alice).status_code == 200

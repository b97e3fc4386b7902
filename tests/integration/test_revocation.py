"""An admin's word holds at once, not at the next connection: a long-poll opened before a ban,
a removal, a drain or its owner's disable gets no task and ends; a live event stream ends when
its key is revoked. On a real coordinator, over real HTTP, with long-polls that are open while
the admin acts (each would otherwise wait 30 s: ending well before that is the proof)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

from gridx.coordinator.cli.cluster import LocalCluster, make_user
from tests.integration.conftest import Client

POLL_S = 30
ENDS_WITHIN_S = 10  # a third of the poll: it ended because of the admin, not its own timeout


def _node(cluster: LocalCluster, key: str, name: str) -> dict[str, str]:
    r = httpx.post(
        f"{cluster.url}/agent/register",
        json={"name": name},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['node_token']}"}


class OpenPoll:
    """A long-poll running in a thread; `ended()` waits for its answer."""

    def __init__(self, cluster: LocalCluster, node: dict[str, str]) -> None:
        self.response: httpx.Response | None = None
        self.started = time.monotonic()
        url = f"{cluster.url}/agent/request_task?wait_s={POLL_S}"

        def poll() -> None:
            self.response = httpx.post(url, headers=node, timeout=POLL_S + 10)

        self.thread = threading.Thread(target=poll, daemon=True)
        self.thread.start()
        time.sleep(1.5)  # the poll is open and waiting before the admin acts
        assert self.response is None, self.response

    def ended(self) -> tuple[httpx.Response, float]:
        self.thread.join(POLL_S + 10)
        assert self.response is not None
        return self.response, time.monotonic() - self.started


def _submit(client: Client) -> str:
    return client.submit(b"print('never runs on a refused node')\n", {"rounds": 1, "shards": 1})


def _after(act: Callable[[], httpx.Response]) -> None:
    r = act()
    assert r.status_code == 200, r.text


def test_bans_removals_drains_and_disables_reach_open_polls(
    cluster: LocalCluster, client: Client
) -> None:
    admin = client.http
    bob_key = make_user(cluster.data_dir, "bob@example.org")
    banned, removed = _node(cluster, cluster.api_key, "b"), _node(cluster, cluster.api_key, "r")
    drained, bobs = _node(cluster, cluster.api_key, "d"), _node(cluster, bob_key, "bob-node")
    ids = {n["name"]: n["id"] for n in admin.get("/admin/nodes").json()}

    polls = {name: OpenPoll(cluster, node) for name, node in
             (("b", banned), ("r", removed), ("d", drained), ("bob-node", bobs))}  # fmt: skip
    _after(lambda: admin.post(f"/admin/nodes/{ids['b']}/banned", json={"banned": True}))
    _after(lambda: admin.delete(f"/admin/nodes/{ids['r']}"))
    _after(lambda: admin.post(f"/nodes/{ids['d']}/drain", json={"drain": True}))
    _after(lambda: admin.post("/admin/users/bob@example.org/disabled", json={"disabled": True}))
    answers = {name: poll.ended() for name, poll in polls.items()}
    for name, (_, took) in answers.items():
        assert took < ENDS_WITHIN_S, (name, took)
    assert answers["b"][0].status_code == 403 and answers["b"][0].json()["code"] == "node_banned"
    assert answers["r"][0].status_code == 401
    assert answers["d"][0].status_code == 204 and answers["bob-node"][0].status_code == 204

    # a task is queued: none of them gets it, in one claim or a poll
    job_id = _submit(client)
    for node in (drained, bobs):
        r = httpx.post(f"{cluster.url}/agent/request_task?wait_s=2", headers=node, timeout=10)
        assert r.status_code == 204, r.text
    for node, status in ((banned, 403), (removed, 401)):
        r = httpx.post(f"{cluster.url}/agent/request_task?wait_s=0", headers=node)
        assert r.status_code == status, r.text
    body: dict[str, Any] = client.job(job_id)
    assert body["tasks"][0]["status"] == "queued" and body["tasks"][0]["history"] == []


def test_a_live_event_stream_ends_when_its_key_is_revoked(
    cluster: LocalCluster, client: Client
) -> None:
    made = client.http.post("/keys", json={"name": "dashboard"}).json()
    lines: list[str] = []
    done = threading.Event()

    def follow() -> None:
        headers = {"Authorization": f"Bearer {made['key']}"}
        with httpx.stream(
            "GET", f"{cluster.url}/stats/overview/events", headers=headers, timeout=60
        ) as resp:
            for line in resp.iter_lines():
                lines.append(line)
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    deadline = time.monotonic() + 20
    while not any(line.startswith("data:") for line in lines):
        assert time.monotonic() < deadline, lines
        time.sleep(0.1)
    revoked_at = time.monotonic()
    r = client.http.delete(f"/keys/{made['info']['id']}")
    assert r.status_code == 200, r.text
    assert done.wait(ENDS_WITHIN_S), lines
    assert time.monotonic() - revoked_at < ENDS_WITHIN_S
    assert "event: revoked" in lines, lines
    assert any("unknown or revoked API key" in line for line in lines), lines

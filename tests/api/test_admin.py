"""The admin's routes through the real app, on SQLite and PostgreSQL: users, keys, nodes, audit."""

from __future__ import annotations

from tests.api.helpers import claim, register, submit
from tests.support.api import Api, audit, auth


def test_users_are_listed_disabled_enabled_and_given_roles_by_admins_only(api: Api) -> None:
    assert api.client.get("/admin/users", headers=api.alice).status_code == 403
    rows = api.client.get("/admin/users", headers=api.admin).json()
    assert [(u["email"], u["role"], u["disabled"], u["keys"]) for u in rows] == [
        ("alice@example.org", "user", False, 1),
        ("bob@example.org", "user", False, 1),
        ("root@example.org", "admin", False, 1),
    ]
    # alice's job waits while she is disabled; her key is refused with a clear reason
    job_id = submit(api, api.alice).json()["job"]["id"]
    r = api.client.post(
        "/admin/users/alice@example.org/disabled", json={"disabled": True}, headers=api.admin
    )
    assert r.status_code == 200 and r.json()["disabled"] is True
    r = api.client.get("/jobs/", headers=api.alice)
    assert r.status_code == 403 and r.json()["code"] == "user_disabled", r.text
    node = register(api, api.bob, "bobs-node")
    assert claim(api, node) is None  # her job takes no task
    api.client.post(
        "/admin/users/alice@example.org/disabled", json={"disabled": False}, headers=api.admin
    )
    task = claim(api, node)
    assert task is not None and task["job_id"] == job_id
    # roles: bob becomes an admin and can list users; an admin cannot demote or disable itself
    r = api.client.post(
        "/admin/users/bob@example.org/role", json={"role": "admin"}, headers=api.admin
    )
    assert r.json()["role"] == "admin"
    assert api.client.get("/admin/users", headers=api.bob).status_code == 200
    me = "/admin/users/root@example.org"
    assert (
        api.client.post(f"{me}/role", json={"role": "user"}, headers=api.admin).status_code == 409
    )
    r = api.client.post(f"{me}/disabled", json={"disabled": True}, headers=api.admin)
    assert r.status_code == 409
    r = api.client.post("/admin/users/x@y.z/role", json={"role": "admin"}, headers=api.admin)
    assert r.status_code == 404
    r = api.client.post(me + "/role", json={"role": "god"}, headers=api.admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "role"
    actions = [(e["action"], e["target"], e["actor"]) for e in audit(api)]
    assert actions == [
        ("user.role", "bob@example.org", "root@example.org"),
        ("user.enable", "alice@example.org", "root@example.org"),
        ("user.disable", "alice@example.org", "root@example.org"),
    ]


def test_a_second_key_is_listed_by_prefix_revoked_at_once_and_rotated(api: Api) -> None:
    r = api.client.post("/keys", json={"name": "ci"}, headers=api.alice)
    assert r.status_code == 201, r.text
    made = r.json()
    script = auth(made["key"])
    assert api.client.get("/me", headers=script).json()["email"] == "alice@example.org"
    keys = api.client.get("/keys", headers=api.alice).json()
    assert [k["name"] for k in keys] == ["first key", "ci"]
    assert all(made["key"] not in str(k) for k in keys)  # never the key itself
    assert keys[1]["prefix"] == made["key"][:12] and keys[1]["last_used_at"] is not None
    # bob can neither see nor revoke alice's keys; an admin can
    assert api.client.delete(f"/keys/{made['info']['id']}", headers=api.bob).status_code == 404
    r = api.client.get("/keys?user=alice@example.org", headers=api.bob)
    assert r.status_code == 403
    assert len(api.client.get("/keys?user=*", headers=api.admin).json()) == 4
    # revoked: the very next request is refused
    r = api.client.delete(f"/keys/{made['info']['id']}", headers=api.alice)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert api.client.get("/me", headers=script).status_code == 401
    assert api.client.delete(f"/keys/{made['info']['id']}", headers=api.alice).status_code == 409
    # rotate the first key: the old one dies, the new one works, same name
    first = keys[0]["id"]
    r = api.client.post(f"/keys/{first}/rotate", headers=api.admin)
    assert r.status_code == 201 and r.json()["info"]["name"] == "first key"
    assert api.client.get("/me", headers=api.alice).status_code == 401
    assert api.client.get("/me", headers=auth(r.json()["key"])).status_code == 200
    # an admin makes a key for another user
    r = api.client.post(
        "/keys", json={"name": "ops", "owner": "bob@example.org"}, headers=api.admin
    )
    assert r.json()["info"]["user"] == "bob@example.org"
    actions = [e["action"] for e in audit(api)]
    assert actions == ["key.create", "key.rotate", "key.revoke", "key.create"]


def test_a_banned_node_has_its_lease_returned_and_every_call_refused(api: Api) -> None:
    job_id = submit(api, api.alice).json()["job"]["id"]
    bad = register(api, api.bob, "bad")
    node_id = api.client.get("/nodes", headers=api.bob).json()[0]["id"]
    task = claim(api, bad)
    assert task is not None
    r = api.client.post(f"/admin/nodes/{node_id}/banned", json={}, headers=api.bob)
    assert r.status_code == 403  # owners cannot ban; admins can
    r = api.client.post(f"/admin/nodes/{node_id}/banned", json={}, headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "banned"
    detail = api.client.get(f"/jobs/{job_id}", headers=api.alice).json()
    t = detail["tasks"][0]
    assert (t["status"], t["attempts"]) == ("queued", 0)  # back in the queue, attempt refunded
    for method, path, body in (
        ("POST", "/agent/request_task?wait_s=0", None),
        ("POST", "/agent/heartbeat", {"running": []}),
        (
            "POST",
            "/agent/complete_task",
            {"task_id": task["task_id"], "lease_token": task["lease_token"]},
        ),
    ):
        r = api.client.request(method, path, json=body, headers=bad)
        assert r.status_code == 403 and r.json()["code"] == "node_banned", (path, r.text)
    good = register(api, api.bob, "good")
    again = claim(api, good)
    assert again is not None and again["task_id"] == task["task_id"]
    # removal: the token is dead (401), the node leaves the lists but not `--all`
    good_id = [
        n["id"] for n in api.client.get("/nodes", headers=api.bob).json() if n["name"] == "good"
    ]
    r = api.client.delete(f"/admin/nodes/{good_id[0]}", headers=api.admin)
    assert r.status_code == 200 and r.json()["status"] == "removed"
    assert api.client.post("/agent/heartbeat", json={}, headers=good).status_code == 401
    assert [n["name"] for n in api.client.get("/nodes", headers=api.bob).json()] == ["bad"]
    everything = api.client.get("/admin/nodes", headers=api.admin).json()
    assert {n["name"]: n["status"] for n in everything} == {"bad": "banned", "good": "removed"}
    assert claim(api, register(api, api.bob, "third"))["task_id"] == task["task_id"]  # type: ignore[index]
    r = api.client.post(f"/admin/nodes/{node_id}/banned", json={"banned": False}, headers=api.admin)
    assert r.json()["status"] != "banned"
    assert api.client.post("/agent/heartbeat", json={}, headers=bad).status_code == 200
    actions = [e["action"] for e in audit(api)]
    assert actions == ["node.unban", "node.remove", "node.ban"]

"""The admin's CLI against a real coordinator and a real node: every command, with `--json`;
and a revoked key refused at once by both replicas of a PostgreSQL deployment."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from gridx.coordinator.cli.cluster import LocalCluster, make_user
from tests.integration.conftest import Client


def gridx(
    cluster: LocalCluster, key: str, *args: str, url: str = ""
) -> subprocess.CompletedProcess:
    """`gridx ARGS` as a subprocess, talking to the cluster with `key`."""
    return subprocess.run(
        [sys.executable, "-m", "gridx.coordinator.cli", *args, "--url", cluster.url,
         "--api-key", key],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "GRIDX_CONFIG": "/nonexistent.toml"},
    )  # fmt: skip


def ok(cluster: LocalCluster, key: str, *args: str) -> Any:
    out = gridx(cluster, key, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_every_admin_command_on_a_real_coordinator_and_node(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    root = cluster.api_key
    bob = make_user(cluster.data_dir, "bob@example.org")
    users = ok(cluster, root, "user", "list")
    assert [(u["email"], u["role"]) for u in users] == [
        ("admin@gridx.local", "admin"),
        ("bob@example.org", "user"),
    ]
    # a plain user is told it needs an admin, in one line, exit 1
    denied = gridx(cluster, bob, "user", "list")
    assert denied.returncode == 1 and "only an admin may do this" in denied.stderr, denied

    assert ok(cluster, root, "user", "disable", "bob@example.org")[0]["disabled"] is True
    refused = gridx(cluster, bob, "job", "list")
    assert refused.returncode == 1 and "bob@example.org is disabled" in refused.stderr
    assert ok(cluster, root, "user", "enable", "bob@example.org")[0]["disabled"] is False
    assert gridx(cluster, bob, "job", "list").returncode == 0
    assert ok(cluster, root, "user", "set-role", "bob@example.org", "admin")[0]["role"] == "admin"

    made = ok(cluster, bob, "key", "create", "--name", "ci")
    script = made["key"]
    keys = ok(cluster, bob, "key", "list")
    assert [k["name"] for k in keys] == ["first key", "ci"] and script not in json.dumps(keys)
    table = gridx(cluster, bob, "key", "list").stdout
    assert script[:12] in table and script not in table
    ok(cluster, bob, "key", "revoke", str(made["info"]["id"]))
    gone = gridx(cluster, script, "job", "list")
    assert gone.returncode == 1 and "unknown or revoked API key" in gone.stderr
    rotated = ok(cluster, root, "key", "rotate", str(keys[0]["id"]))
    assert gridx(cluster, bob, "job", "list").returncode == 1  # bob's first key is dead
    assert gridx(cluster, rotated["key"], "job", "list").returncode == 0
    assert ok(cluster, root, "key", "create", "--user", "bob@example.org")["info"]["user"] == (
        "bob@example.org"
    )

    # a real node: banned while it works, it stops with one line and exit code 3
    node = cluster.add_node("doomed")
    deadline = time.monotonic() + 60
    while not (nodes := ok(cluster, root, "node", "list")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    node_id = nodes[0]["id"]
    assert ok(cluster, root, "node", "ban", node_id)["status"] == "banned"
    assert node.wait(60) == 3
    log = (cluster.root / "doomed.log").read_text().strip().splitlines()
    assert "is banned by the coordinator's admin" in log[-1], log[-3:]
    assert ok(cluster, root, "node", "ban", node_id, "--lift")["status"] != "banned"
    every = ok(cluster, root, "node", "ban", "--owner", "admin@gridx.local")
    assert [(n["id"], n["status"]) for n in every] == [(node_id, "banned")]
    ok(cluster, root, "node", "ban", "--owner", "admin@gridx.local", "--lift")
    assert ok(cluster, root, "node", "remove", node_id)["status"] == "removed"
    assert ok(cluster, root, "node", "list") == []
    assert [n["status"] for n in ok(cluster, root, "node", "list", "--all")] == ["removed"]

    actions = [e["action"] for e in ok(cluster, root, "audit")]
    assert actions == [
        "node.remove", "node.unban", "node.ban", "node.unban", "node.ban", "key.create",
        "key.rotate", "key.revoke",
        "key.create", "user.role", "user.enable", "user.disable",
        "user.create", "user.create",  # bob, then the cluster's admin, by `gridx user create`
    ]  # fmt: skip
    assert "user.disable" in gridx(cluster, root, "audit").stdout


def test_a_revoked_key_is_refused_by_both_replicas_at_once(replicas: LocalCluster) -> None:
    made = httpx.post(
        f"{replicas.urls[0]}/keys",
        json={"name": "leak"},
        headers={"Authorization": f"Bearer {replicas.api_key}"},
    ).json()
    leaked = {"Authorization": f"Bearer {made['key']}"}
    for url in replicas.urls:
        assert httpx.get(f"{url}/me", headers=leaked).status_code == 200
    r = httpx.delete(
        f"{replicas.urls[1]}/keys/{made['info']['id']}",
        headers={"Authorization": f"Bearer {replicas.api_key}"},
    )
    assert r.status_code == 200
    for url in replicas.urls:  # the very next request, on either replica
        assert httpx.get(f"{url}/me", headers=leaked).status_code == 401

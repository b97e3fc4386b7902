"""Nodes that vanish, scripts that fail, shutdowns, and what the sandbox keeps out."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gridx.coordinator.cli.cluster import LocalCluster
from gridx.node.sandbox import detect
from tests.integration.conftest import FAST, Client

SLOW = textwrap.dedent("""
    import os, time, torch
    time.sleep(float(os.environ.get("SLEEP", "4")))
    torch.save({"w": torch.ones(3)}, os.environ["GRIDX_OUTPUT"])
""").encode()


def _leased_to(client: Client, job_id: str) -> str:
    body = client.wait(job_id, lambda b: any(t["status"] == "leased" for t in b["tasks"]), 60)
    return next(t["node_id"] for t in body["tasks"] if t["status"] == "leased")


def test_a_node_killed_mid_task_loses_its_lease_and_the_task_is_reissued(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("doomed")
    # one try of the user's code is enough: a vanished node is a loss, not a failed try
    job_id = client.submit(SLOW, {"rounds": 1, "shards": 1, "max_attempts": 1})
    doomed_id = _leased_to(client, job_id)
    cluster.kill_node("doomed")
    cluster.add_node("survivor")
    body = client.wait_done(job_id, 90)
    assert body["job"]["status"] == "succeeded", body
    task = body["tasks"][0]
    assert (task["attempts"], task["losses"]) == (1, 1)
    history = task["history"]
    assert history[0]["node_id"] == doomed_id and history[0]["outcome"] == "lease_expired"
    assert history[1]["node_id"] != doomed_id and history[1]["outcome"] == "succeeded"


def test_the_init_step_survives_its_node_and_starts_every_shard_from_one_model(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("doomed")
    # keep_updates: the round models stay after the job ends, so the test can compare them
    config = {"rounds": 1, "shards": 2, "max_attempts": 1, "keep_updates": True}
    job_id = client.submit(SLOW, config)
    doomed_id = _leased_to(client, job_id)
    first = client.job(job_id)["tasks"][0]
    assert first["round"] == -1 and first["status"] == "leased"
    cluster.kill_node("doomed")  # the initialisation step loses its node, like any task
    cluster.add_node("survivor")
    body = client.wait_done(job_id, 120)
    assert body["job"]["status"] == "succeeded", body
    init = body["tasks"][0]
    assert init["round"] == -1 and (init["attempts"], init["losses"]) == (1, 1)
    assert init["history"][0]["node_id"] == doomed_id
    assert init["history"][0]["outcome"] == "lease_expired"
    rounds = {r["index"]: r for r in body["rounds"]}
    assert rounds[0]["input_model_sha256"] == rounds[-1]["output_model_sha256"] is not None


def test_a_node_that_hangs_up_mid_long_poll_is_never_leased_a_task(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("idle")
    client.wait_for_nodes(1)
    time.sleep(1.0)  # its long-poll is parked on the coordinator
    cluster.kill_node("idle")  # the socket closes mid-poll
    job_id = client.submit(SLOW, {"rounds": 1, "shards": 1})
    time.sleep(1.5)
    task = client.job(job_id)["tasks"][0]
    assert task["status"] == "queued" and task["history"] == [], task
    cluster.add_node("live")
    assert client.wait_done(job_id, 90)["job"]["status"] == "succeeded"


BIG_RESULT = b"""
import os, torch
torch.save({"w": torch.ones(1_000_000)}, os.environ["GRIDX_OUTPUT"])  # 4 MB
"""


def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_full_disk_refuses_the_upload_cleanly_and_the_task_is_reissued(
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("mounting a small tmpfs for the blob store needs root (CI runs as root)")
    root = tmp_path / "cluster"
    blobs = root / "coordinator" / "blobs"
    blobs.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(blobs)], check=True)
    # the subject is a disk that fills up under an upload, not the free-space floor: no floor
    cluster = LocalCluster(root, coordinator_env={**FAST, "GRIDX_MIN_FREE_MB": "0"})
    try:
        cluster.start()
        client = Client(cluster)
        cluster.add_node("node")
        job_id = client.submit(BIG_RESULT, {"rounds": 1, "shards": 1, "max_attempts": 3})
        log = root / "node.log"
        _until(lambda: "result not accepted: 507 storage_full" in log.read_text(), 90, "a 507")
        assert [p.name for p in (blobs / "tmp").iterdir()] == []  # nothing half-written kept
        subprocess.run(["mount", "-o", "remount,size=64m", str(blobs)], check=True)
        body = client.wait_done(job_id, 90)
        assert body["job"]["status"] == "succeeded", body
        history = body["tasks"][0]["history"]
        assert [h["outcome"] for h in history] == ["lease_expired", "succeeded"]
    finally:
        cluster.stop()
        subprocess.run(["umount", "-l", str(blobs)], check=False)


class CuttingProxy:
    """A TCP proxy to the coordinator that cuts the first `cuts` result uploads after 1 MB of
    body (aiohttp itself retries a PUT once on a dropped keep-alive connection; two cuts reach
    the node's own backoff)."""

    def __init__(self, target_port: int, cuts: int = 2) -> None:
        self.target_port = target_port
        self.cuts = cuts
        self.uploads = 0
        self.cut = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        threading.Thread(target=self._serve, args=(started,), daemon=True).start()
        started.wait(10)

    def _serve(self, started: threading.Event) -> None:
        async def main() -> None:
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await asyncio.Event().wait()

        self.loop.run_until_complete(main())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        def close() -> None:
            for w in (writer, up_w):
                w.transport.abort()

        async def upstream() -> None:  # node -> coordinator, watching for result uploads
            cutting, sent = False, 0
            try:
                while data := await reader.read(65536):
                    if b"PUT /agent/results" in data:
                        self.uploads += 1
                        if self.cut < self.cuts:
                            self.cut, cutting = self.cut + 1, True
                    up_w.write(data)
                    await up_w.drain()
                    sent += len(data) if cutting else 0
                    if sent >= 1 << 20:
                        break  # the network goes away in the middle of the body
            finally:
                close()

        async def downstream() -> None:
            try:
                while data := await up_r.read(65536):
                    writer.write(data)
                    await writer.drain()
            finally:
                close()

        await asyncio.gather(upstream(), downstream(), return_exceptions=True)


def test_a_connection_cut_mid_upload_is_retried_and_nothing_is_duplicated(
    cluster: LocalCluster, client: Client
) -> None:
    proxy = CuttingProxy(cluster.port)
    cluster.add_node("node", args=("--coordinator", f"http://127.0.0.1:{proxy.port}"))
    # keep_updates: the update stays recorded after the merge, so the test can look at it
    job_id = client.submit(BIG_RESULT, {"rounds": 1, "shards": 1, "keep_updates": True})
    body = client.wait_done(job_id, 120)
    assert body["job"]["status"] == "succeeded", body
    assert proxy.cut == 2 and proxy.uploads >= 3  # cut twice, then retried through
    history = body["tasks"][0]["history"]
    assert [h["outcome"] for h in history] == ["succeeded"]  # no reissue, one attempt
    assert "upload failed" in (cluster.root / "node.log").read_text()
    store = cluster.data_dir / "blobs"
    assert list((store / "tmp").iterdir()) == []  # the cut upload left nothing behind
    kept = {p.name for p in store.rglob("*") if p.is_file() and p.parent.name != "tmp"}
    with sqlite3.connect(cluster.data_dir / "gridx.db") as db:
        recorded = {r[0] for r in db.execute("SELECT sha256 FROM blobs")}
        results = [r[0] for r in db.execute("SELECT result_sha FROM tasks")]
    assert kept == recorded and results[0] in recorded  # every file is a known blob, once


def test_a_failing_script_fails_the_job_with_its_stderr_not_the_node(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("node-1")
    bad = b"import sys\nprint('failing', file=sys.stderr)\nraise ValueError('boom from user code')"
    job_id = client.submit(bad, {"rounds": 2, "shards": 1, "max_attempts": 2})
    body = client.wait_done(job_id)
    assert body["job"]["status"] == "failed"
    assert "nonzero_exit" in body["job"]["error"] and "2 attempt(s)" in body["job"]["error"]
    history = body["tasks"][0]["history"]
    assert [h["outcome"] for h in history] == ["user_error", "user_error"]
    assert "ValueError: boom from user code" in history[-1]["stderr_tail"]
    assert [r["status"] for r in body["rounds"]] == ["failed"]
    # the node is not blamed: still online, and the next job runs on it
    nodes = client.http.get("/nodes").json()
    assert nodes[0]["status"] == "online" and nodes[0]["tasks_done"] == 0
    ok = client.submit(
        b"import torch\ntorch.save({'w': torch.zeros(1)}, 'model.pth')\n",
        {"rounds": 1, "shards": 1},
    )
    assert client.wait_done(ok)["job"]["status"] == "succeeded"


def test_a_script_that_writes_no_model_or_runs_too_long_gets_a_clear_reason(
    cluster: LocalCluster, client: Client
) -> None:
    cluster.add_node("node-1")
    nothing = client.submit(
        b"print('forgot to save')\n", {"rounds": 1, "shards": 1, "max_attempts": 1}
    )
    body = client.wait_done(nothing)
    assert body["tasks"][0]["error_code"] == "missing_output"
    slow = client.submit(
        b"import time\ntime.sleep(60)\n",
        {"rounds": 1, "shards": 1, "max_attempts": 1, "task_timeout_s": 2},
    )
    body = client.wait_done(slow, 60)
    assert body["job"]["status"] == "failed" and body["tasks"][0]["error_code"] == "timeout"


def test_sigterm_hands_the_running_task_back_without_using_an_attempt(
    cluster: LocalCluster, client: Client
) -> None:
    node = cluster.add_node("leaving")
    job_id = client.submit(SLOW.replace(b'"4"', b'"30"'), {"rounds": 1, "shards": 1})
    _leased_to(client, job_id)
    node.send_signal(signal.SIGTERM)
    assert node.wait(timeout=20) == 0
    body = client.job(job_id)
    task = body["tasks"][0]
    assert task["status"] == "queued" and task["attempts"] == 0
    assert task["history"][0]["outcome"] == "released"
    assert body["job"]["status"] == "running"
    # restarted, the node keeps its identity (no second registration) and takes the task again
    cluster.add_node("leaving")
    client.wait(job_id, lambda b: b["tasks"][0]["status"] == "leased")
    # cancelling the job stops the run at the node's next heartbeat
    assert client.http.post(f"/jobs/{job_id}/cancel").status_code == 200
    quick = client.submit(
        b"import torch\ntorch.save({'w': torch.zeros(1)}, 'model.pth')\n",
        {"rounds": 1, "shards": 1},
    )
    assert client.wait_done(quick, 20)["job"]["status"] == "succeeded"  # long before 30 s
    nodes = client.http.get("/nodes").json()
    assert len(nodes) == 1 and nodes[0]["tasks_done"] == 1
    assert "no longer wants it" in (cluster.root / "leaving.log").read_text()


def test_the_sandbox_blocks_the_network_and_hides_the_node_token(
    cluster: LocalCluster, client: Client
) -> None:
    isolation = detect()
    cluster.add_node("node-1")
    state_dir = cluster.root / "node-1"
    probe = textwrap.dedent(f"""
        import json, os, socket, sys, torch
        result = {{}}
        try:
            socket.create_connection(("127.0.0.1", {cluster.port}), timeout=2).close()
            result["net_blocked"] = 0.0
        except OSError:
            result["net_blocked"] = 1.0
        try:
            open("{state_dir}/identity.json").read()
            result["token_hidden"] = 0.0
        except OSError:
            result["token_hidden"] = 1.0
        try:
            open("/etc/gridx-probe", "w").write("x")
            result["host_writable"] = 1.0
        except OSError:
            result["host_writable"] = 0.0
        for _ in range(1024):  # 1 GB of stdout
            sys.stdout.write("x" * (1 << 20))
        json.dump(result, open(os.environ["GRIDX_METRICS"], "w"))
        torch.save({{"w": torch.zeros(1)}}, "model.pth")
    """).encode()
    job_id = client.submit(probe, {"rounds": 1, "shards": 1})
    body = client.wait_done(job_id)
    assert body["job"]["status"] == "succeeded", body
    metrics = body["rounds"][0]["metrics"]
    nodes = client.http.get("/nodes").json()
    assert nodes[0]["capabilities"]["isolation"] == isolation
    if isolation == "bubblewrap":
        assert metrics == {"net_blocked": 1.0, "token_hidden": 1.0, "host_writable": 0.0}
    elif isolation == "unshare":
        assert metrics["net_blocked"] == 1.0
    else:  # no isolation on this host: the node says so, and the test shows what that means
        assert "NO ISOLATION" in (cluster.root / "node-1.log").read_text()


def test_a_task_that_outlives_its_upload_link_uploads_through_a_fresh_one(
    tmp_path: Path,
) -> None:
    # links live 3 s here; the task runs 4 s after its inputs arrived
    with LocalCluster(tmp_path / "c", coordinator_env={**FAST, "GRIDX_SIGNED_URL_S": "3"}) as c:
        c.add_node("patient")
        client = Client(c)
        job_id = client.submit(SLOW, {"rounds": 1, "shards": 1, "max_attempts": 1})
        body = client.wait_done(job_id, 90)
        assert body["job"]["status"] == "succeeded", (body, c.node_log("patient", 30))
        assert "its upload link was refused" in c.node_log("patient", 200)

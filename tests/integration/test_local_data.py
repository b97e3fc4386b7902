"""Federated learning on data that never leaves its nodes, with real processes: three nodes hold
parts of the digits dataset under one name (one with its columns in another order, mapped by
name), a fourth holds nothing and a fifth belongs to someone who did not share it. Every byte
the nodes send goes through a recording proxy: none of the data reaches the coordinator, its
database or its blob store, and the model matches centralized training on the union."""

from __future__ import annotations

import csv
import http.client
import http.server
import importlib.util
import io
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from gridx.coordinator.cli.cluster import LocalCluster, make_user
from tests.integration.conftest import REPO, Client

DIGITS = REPO / "examples" / "digits"
ROUNDS, EPOCHS = 10, 3
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RecordingProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the coordinator and keeps every request body. Its threads are
    joined when it closes (the nodes long-poll for 2 s at most, so that is quick)."""

    daemon_threads = False
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a node that hung up mid-answer (stopped at the end of the test)

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Forward)


class _Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle kept-alive connection ends its thread
    server: RecordingProxy

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(out)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._body()
        with self.server.lock:
            self.server.bodies.append(body)
        up = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=120)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        up.request(self.command, self.path, body=body, headers=headers)
        resp = up.getresponse()
        payload = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        up.close()

    do_GET = do_POST = do_PUT = do_DELETE = _forward


@pytest.fixture
def proxy(cluster: LocalCluster) -> Iterator[RecordingProxy]:
    server = RecordingProxy(cluster.port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        for name in list(cluster.nodes):  # their connections end, and with them the threads
            cluster.kill_node(name)
        server.shutdown()
        server.server_close()


def _split(tmp_path: Path, canaries: list[str]) -> list[Path]:
    """The digits training set dealt to three sites, each row tagged with its site's canary;
    the third site's file lists its columns in another order."""
    with (DIGITS / "data" / "train.csv").open(newline="") as fh:
        header, *rows = list(csv.reader(fh))
    paths = []
    for site, canary in enumerate(canaries):
        order = [*header, "site"] if site < 2 else ["site", "label", *header[:-1]]
        path = tmp_path / f"site{site}" / "digits.csv"
        path.parent.mkdir()
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(order)
            for row in rows[site::3]:
                named = dict(zip([*header, "site"], [*row, canary], strict=True))
                out.writerow([named[c] for c in order])
        paths.append(path)
    return paths


def _declare(cluster: LocalCluster, node: str, path: Path, *extra: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridx.node", "dataset", "add", "digits", str(path),
         "--state-dir", str(cluster.root / node), *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


def _accuracy(state: dict[str, torch.Tensor]) -> float:
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    assert spec and spec.loader
    digits = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(digits)
    model = digits.make_model()
    model.load_state_dict(state)
    x, y = digits.load(DIGITS / "data" / "test.csv")
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _central(tmp_path: Path, epochs: int = ROUNDS * EPOCHS) -> float:
    """The same script on the union of the sites' data, for as many epochs in all."""
    env = {
        "GRIDX_DATA": str(DIGITS / "data" / "train.csv"),
        "GRIDX_EPOCHS": str(epochs),
        "GRIDX_OUTPUT": str(tmp_path / "central.pth"),
        "GRIDX_METRICS": str(tmp_path / "central.json"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, str(DIGITS / "train.py")], env=env, capture_output=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return _accuracy(torch.load(tmp_path / "central.pth", weights_only=True))


def test_a_job_on_data_that_stays_on_its_nodes(
    cluster: LocalCluster, client: Client, proxy: RecordingProxy, tmp_path: Path
) -> None:
    canaries = [f"CANARY-{uuid.uuid4().hex}" for _ in range(4)]
    sites = _split(tmp_path, canaries[:3])
    for name, path in zip(("site-a", "site-b", "site-c"), sites, strict=True):
        _declare(cluster, name, path)
    eve_key = make_user(cluster.data_dir, "eve@example.org")
    theirs = tmp_path / "eve" / "digits.csv"
    theirs.parent.mkdir()
    theirs.write_text(sites[0].read_text().replace(canaries[0], canaries[3]))
    _declare(cluster, "eve-node", theirs, "--allow-user", "someone@example.org")
    via_proxy = ("--coordinator", f"http://127.0.0.1:{proxy.server_address[1]}")
    # one at a time: five sandbox self-tests at once on two cores share the task user's limits
    for i, name in enumerate(("site-a", "site-b", "site-c", "no-data", "eve-node")):
        key = {"GRIDX_ENROLMENT_KEY": eve_key} if name == "eve-node" else {}
        cluster.add_node(name, {"GRIDX_POLL_WAIT_S": "2", **key}, args=via_proxy)
        client.wait_for_nodes(i + 1)  # the admin sees every node, eve's too

    config = {"dataset": "digits", "rounds": ROUNDS, "epochs": EPOCHS, "min_nodes": 3}
    job_id = client.submit((DIGITS / "train.py").read_bytes(), config)
    body = client.wait_done(job_id, 600)
    assert body["job"]["status"] == "succeeded", (body["job"], body["tasks"])

    names = {n["id"]: n["name"] for n in client.http.get("/nodes").json()}
    assert "eve-node" in names.values()
    ran = {names[t["node_id"]] for t in body["tasks"] if t["status"] == "succeeded"}
    assert ran == {"site-a", "site-b", "site-c"}, body["tasks"]  # never no-data or eve's
    for r in body["rounds"]:
        if r["index"] >= 0:
            assert sorted(r["nodes"]) == ["site-a", "site-b", "site-c"]
    rows = {t["rows"] for t in body["tasks"] if t["round"] >= 0}
    assert rows == {479}  # the rows each site declared (1437 / 3)

    # not one byte of any site's data reached the coordinator: requests, database, blobs, log
    assert proxy.bodies, "the nodes did not go through the proxy"
    stored = [p for p in cluster.data_dir.rglob("*") if p.is_file()]
    seen = [*proxy.bodies, *(p.read_bytes() for p in stored)]
    seen.append((cluster.root / "coordinator.log").read_bytes())
    for canary in canaries:
        assert not any(canary.encode() in b for b in seen), canary
    a_row = sites[0].read_text().splitlines()[1].rsplit(",", 1)[0].encode()  # pixels + label
    assert not any(a_row in b for b in proxy.bodies)

    model = client.http.get(f"/jobs/{job_id}/model")
    federated = _accuracy(torch.load(io.BytesIO(model.content), weights_only=True))
    central = _central(tmp_path)
    print(f"held-out accuracy: federated {federated:.4f}, centralized {central:.4f}")
    assert federated >= central - 0.01, (federated, central)


def test_a_holder_whose_readings_diverge_is_left_out_under_robust_rules(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    """Three holders; the third's readings hold NaNs, so its every update is NaN. fedmedian and
    trimmed_mean leave it out of each round (and say so) and land where centralized training
    does; FedAvg fails at once, naming the holder."""
    sites = _split(tmp_path, ["a", "b", "c"])
    broken = sites[2].read_text().splitlines()
    broken[1:] = [
        ",".join("nan" if i == 3 else v for i, v in enumerate(row.split(","))) for row in broken[1:]
    ]
    sites[2].write_text("\n".join(broken) + "\n")
    for i, (name, path) in enumerate(zip(("site-a", "site-b", "site-c"), sites, strict=True)):
        _declare(cluster, name, path)
        cluster.add_node(name)
        client.wait_for_nodes(i + 1)
    train = (DIGITS / "train.py").read_bytes()
    rounds, epochs = 4, 3
    central = _central(tmp_path, rounds * epochs)
    for strategy in ({"name": "fedmedian"}, {"name": "trimmed_mean", "beta": 0.2}):
        config = {"dataset": "digits", "rounds": rounds, "epochs": epochs, "min_nodes": 3,
                  "strategy": strategy, "init_step": False}  # fmt: skip
        body = client.wait_done(client.submit(train, config), 600)
        assert body["job"]["status"] == "succeeded", (body["job"], body["tasks"])
        for r in body["rounds"]:
            assert sorted(r["nodes"]) == ["site-a", "site-b"], r
            assert r["excluded"] and r["excluded"][0].startswith("node site-c: [invalid_weights]")
        model = client.http.get(f"/jobs/{body['job']['id']}/model")
        federated = _accuracy(torch.load(io.BytesIO(model.content), weights_only=True))
        assert federated > central - 0.02, (strategy, federated, central)
    config = {"dataset": "digits", "rounds": rounds, "epochs": epochs, "min_nodes": 3,
              "init_step": False, "max_attempts": 3}  # fmt: skip
    body = client.wait_done(client.submit(train, config), 600)
    assert body["job"]["status"] == "failed"
    expected = "the data of node site-c (admin@gridx.local) failed after 1 attempt(s)"
    assert expected in body["job"]["error"], body["job"]["error"]

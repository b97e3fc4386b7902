"""Preparing a task's environment is a phase people can see, and the node's own torch is used.

A package index of our own (PEP 658 metadata, like PyPI) serves a 4 MB wheel and holds its
download half-way until the test has seen the progress on the coordinator's API and on the
node's status page: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gridx.coordinator.cli.cluster import LocalCluster, free_port
from tests.integration.conftest import Client

SIZE = 4_000_000
TRAIN = b"""
import os, torch, gridx_probe
assert torch.__file__.startswith(os.environ["GRIDX_NODE_SITE"]), torch.__file__
torch.save({"w": torch.zeros(1) + gridx_probe.VALUE}, os.environ["GRIDX_OUTPUT"])
"""


def _wheel() -> tuple[str, bytes, bytes]:
    """(file name, wheel bytes, METADATA) of gridx-probe 1.0 with SIZE incompressible bytes."""
    meta = b"Metadata-Version: 2.1\nName: gridx-probe\nVersion: 1.0\n"
    files = {
        "gridx_probe/__init__.py": b"VALUE = 7\n",
        "gridx_probe/blob.bin": hashlib.shake_256(b"probe").digest(SIZE),
        "gridx_probe-1.0.dist-info/METADATA": meta,
        "gridx_probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
            for name, data in files.items()
        )
        + "gridx_probe-1.0.dist-info/RECORD,,\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        zf.writestr("gridx_probe-1.0.dist-info/RECORD", record)
    return "gridx_probe-1.0-py3-none-any.whl", buf.getvalue(), meta


class Index:
    """A one-package index on 127.0.0.1 whose wheel download pauses half-way until `go`."""

    def __init__(self) -> None:
        self.name, self.wheel, self.meta = _wheel()
        self.go = threading.Event()
        self.port = free_port()
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def _send(self, body: bytes, ctype: str, head: bool = False) -> None:
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                if self.path == f"/files/{index.name}":
                    return self._send(index.wheel, "application/octet-stream", head=True)
                self.send_error(404)

            def do_GET(self) -> None:
                sha = hashlib.sha256(index.wheel).hexdigest()
                meta_sha = hashlib.sha256(index.meta).hexdigest()
                if self.path.rstrip("/") == "/simple/gridx-probe":
                    link = (
                        f'<a href="/files/{index.name}#sha256={sha}" '
                        f'data-dist-info-metadata="sha256={meta_sha}" '
                        f'data-core-metadata="sha256={meta_sha}">{index.name}</a>'
                    )
                    return self._send(f"<html><body>{link}</body></html>".encode(), "text/html")
                if self.path == f"/files/{index.name}.metadata":
                    return self._send(index.meta, "text/plain")
                if self.path == f"/files/{index.name}":
                    half = len(index.wheel) // 2
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(index.wheel)))
                    self.end_headers()
                    self.wfile.write(index.wheel[:half])
                    self.wfile.flush()
                    index.go.wait(120)
                    self.wfile.write(index.wheel[half:])
                    return None
                self.send_error(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple"


@pytest.fixture
def index() -> Iterator[Index]:
    i = Index()
    try:
        yield i
    finally:
        i.go.set()
        i.server.shutdown()


def _site() -> str:
    import torch

    return str(torch.__file__).rsplit("/torch/", 1)[0]


def test_preparing_shows_its_download_and_the_node_keeps_its_own_torch(
    cluster: LocalCluster, client: Client, index: Index
) -> None:
    status_port = free_port()
    cluster.add_node(
        "prep",
        extra_env={"PIP_INDEX_URL": index.url, "PIP_NO_CACHE_DIR": "1"},
        args=("--status-port", str(status_port)),
    )
    train = TRAIN.replace(b'os.environ["GRIDX_NODE_SITE"]', repr(_site()).encode())
    job_id = client.submit(train, {"rounds": 1, "shards": 1}, requirements=b"torch\ngridx-probe\n")
    seen = re.compile(r"downloading 1 package \(gridx-probe 1\.0\): [\d.]+ MB / 4\.\d MB")
    deadline = time.monotonic() + 180
    while True:  # the wheel is half-way: the API says so, and torch is not in the list
        task = client.job(job_id)["tasks"][0]
        if task["phase"] == "preparing" and seen.fullmatch(task["phase_detail"] or ""):
            break
        assert time.monotonic() < deadline, task
        time.sleep(0.2)
    page = httpx.get(f"http://127.0.0.1:{status_port}/status.json", timeout=5).json()
    assert page["current_task"]["phase"] == "preparing", page
    assert seen.fullmatch(page["current_task"]["phase_detail"]), page
    index.go.set()
    body = client.wait_done(job_id, 180)
    assert body["job"]["status"] == "succeeded", body["tasks"]
    assert body["tasks"][0]["phase"] is None  # only a leased task has one
    recent = httpx.get(f"http://127.0.0.1:{status_port}/status.json", timeout=5).json()["recent"]
    assert recent[0]["result"] == "succeeded" and recent[0]["prepare_seconds"] > 0, recent
    log = (cluster.root / "prep.log").read_text()
    assert "preparing (downloading 1 package (gridx-probe 1.0)" in log, log

    # a job that asks for another torch is told why, and nothing is downloaded
    clash = client.submit(train, {"rounds": 1, "shards": 1}, requirements=b"torch==2.5.0\n")
    task = client.wait_done(clash, 120)["tasks"][0]
    assert task["error_code"] == "requirements_conflict", task
    assert "this node provides torch" in task["error"], task

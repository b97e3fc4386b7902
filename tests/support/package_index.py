"""A one-package index on 127.0.0.1 (PEP 658 metadata, like PyPI) serving gridx-probe 1.0, a
4 MB wheel whose download pauses half-way until the test says `go`."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gridx.coordinator.cli.cluster import free_port

SIZE = 4_000_000


def make_wheel(
    name: str, version: str, files: dict[str, bytes], requires: tuple[str, ...] = ()
) -> tuple[str, bytes, bytes]:
    """(file name, wheel bytes, METADATA) of a pure-Python wheel holding `files` and naming
    `requires` (its Requires-Dist lines)."""
    dist = f"{name.replace('-', '_')}-{version}"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires).encode()
    files = {
        **files,
        f"{dist}.dist-info/METADATA": meta,
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = (
        "".join(
            f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
            for path, data in files.items()
        )
        + f"{dist}.dist-info/RECORD,,\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
        zf.writestr(f"{dist}.dist-info/RECORD", record)
    return f"{dist}-py3-none-any.whl", buf.getvalue(), meta


@contextlib.contextmanager
def served_folder(folder: Path) -> Iterator[str]:
    """`folder` served read-only over HTTP on 127.0.0.1 (a PEP 503 index, say): its URL."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _wheel() -> tuple[str, bytes, bytes]:
    """gridx-probe 1.0 with SIZE incompressible bytes."""
    return make_wheel(
        "gridx-probe",
        "1.0",
        {
            "gridx_probe/__init__.py": b"VALUE = 7\n",
            "gridx_probe/blob.bin": hashlib.shake_256(b"probe").digest(SIZE),
        },
    )


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

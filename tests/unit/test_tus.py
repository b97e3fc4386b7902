"""The resumable upload's client against a tus server in memory that drops connections: the
file arrives whole, each lost chunk resumed from the offset the server holds. (The real Supabase
Storage server takes the normal path in tests/unit/test_storage.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from gridx.coordinator.storage import tus


class Server:
    """Holds one upload; drops the connection on the PATCHes named, keeping half the chunk."""

    def __init__(self, drop: set[int]) -> None:
        self.drop = drop
        self.patches = 0
        self.held = b""
        self.length = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.length = int(request.headers["upload-length"])
            assert "bucketName" in request.headers["upload-metadata"]
            return httpx.Response(201, headers={"location": "https://gateway/upload/resumable/u1"})
        assert request.url.path == "/upload/resumable/u1" and request.url.host == "storage"
        if request.method == "HEAD":
            return httpx.Response(200, headers={"upload-offset": str(len(self.held))})
        assert int(request.headers["upload-offset"]) == len(self.held)
        self.patches += 1
        body = request.read()
        if self.patches in self.drop:
            self.held += body[: len(body) // 2]
            raise httpx.ReadError("connection reset by peer")
        self.held += body
        return httpx.Response(204, headers={"upload-offset": str(len(self.held))})


async def test_a_dropped_chunk_is_resumed_where_the_server_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tus.anyio, "sleep", lambda s: _now())
    data = os.urandom(2500)
    path = tmp_path / "f"
    path.write_bytes(data)
    server = Server(drop={2, 3})
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        await tus.upload(http, "http://storage/upload/resumable", path, "b", "k", chunk=1000)
    assert server.held == data and server.length == len(data)


async def test_a_connection_that_keeps_dropping_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tus.anyio, "sleep", lambda s: _now())
    path = tmp_path / "f"
    path.write_bytes(os.urandom(1500))
    server = Server(drop=set(range(1, 100)))
    async with httpx.AsyncClient(transport=httpx.MockTransport(server)) as http:
        with pytest.raises(httpx.ReadError):
            await tus.upload(http, "http://storage/upload/resumable", path, "b", "k", chunk=1000)
    assert server.patches == tus.TRIES


async def _now() -> None:
    return None

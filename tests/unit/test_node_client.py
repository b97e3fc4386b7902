"""The node's HTTP client against a real aiohttp server (pytest-aiohttp): retries and integrity."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gridx.node.client import CoordinatorClient
from gridx.node.errors import CoordinatorError, IntegrityError, TransportError
from gridx.schemas.agent import BlobRef, CompleteTaskRequest, HeartbeatRequest


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gridx.node.client.backoff", lambda attempt: 0.0)


async def test_completion_is_retried_through_server_errors(aiohttp_server: Any) -> None:
    calls: list[str] = []

    async def complete(request: web.Request) -> web.Response:
        calls.append(request.headers["Authorization"])
        if len(calls) < 3:
            return web.json_response({"code": "unavailable", "message": "busy"}, status=503)
        return web.json_response({"task_id": "t", "status": "succeeded"})

    app = web.Application()
    app.router.add_post("/agent/complete_task", complete)
    server = await aiohttp_server(app)
    client = CoordinatorClient(str(server.make_url("/")), "gxn_token")
    try:
        ack = await client.complete(
            CompleteTaskRequest(task_id="t", lease_token="l", result_sha256="a" * 64)
        )
    finally:
        await client.close()
    assert ack.status == "succeeded"
    assert calls == ["Bearer gxn_token"] * 3


async def test_client_errors_are_not_retried_and_409_on_fail_means_gone(
    aiohttp_server: Any,
) -> None:
    hits = {"complete": 0, "fail": 0}

    async def complete(request: web.Request) -> web.Response:
        hits["complete"] += 1
        return web.json_response({"code": "stale_lease", "message": "not yours"}, status=409)

    async def fail(request: web.Request) -> web.Response:
        hits["fail"] += 1
        return web.json_response({"code": "stale_lease", "message": "not yours"}, status=409)

    app = web.Application()
    app.router.add_post("/agent/complete_task", complete)
    app.router.add_post("/agent/fail_task", fail)
    server = await aiohttp_server(app)
    client = CoordinatorClient(str(server.make_url("/")), "t")
    try:
        with pytest.raises(CoordinatorError) as err:
            await client.complete(
                CompleteTaskRequest(task_id="t", lease_token="l", result_sha256="a" * 64)
            )
        assert err.value.status == 409 and err.value.code == "stale_lease"
        from gridx.schemas.agent import FailTaskRequest

        assert (
            await client.fail(
                FailTaskRequest(
                    task_id="t", lease_token="l", kind="user_error", code="x", message="m"
                )
            )
            is None
        )
    finally:
        await client.close()
    assert hits == {"complete": 1, "fail": 1}


async def test_downloads_are_checked_against_their_sha256(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    body = b"print('hello')\n"

    async def blob(request: web.Request) -> web.Response:
        return web.Response(body=body)

    app = web.Application()
    app.router.add_get("/blobs/x", blob)
    server = await aiohttp_server(app)
    client = CoordinatorClient(str(server.make_url("/")), "t")
    good = BlobRef(
        url="/blobs/x?exp=1&sig=s",
        sha256=hashlib.sha256(body).hexdigest(),
        size=len(body),
        name="train.py",
    )
    try:
        await client.download(good, tmp_path / "ok.py")
        assert (tmp_path / "ok.py").read_bytes() == body
        bad = BlobRef(url="/blobs/x", sha256="0" * 64, size=len(body), name="train.py")
        with pytest.raises(IntegrityError, match="mismatch"):
            await client.download(bad, tmp_path / "bad.py")
    finally:
        await client.close()


async def _download(aiohttp_server: Any, blob: Any, data: bytes, dest: Path) -> None:
    """The node's client downloads `data` from `blob`, a handler of `/blobs/x`."""
    app = web.Application()
    app.router.add_get("/blobs/x", blob)
    server = await aiohttp_server(app)
    client = CoordinatorClient(str(server.make_url("/")), "gxn_token")
    ref = BlobRef(url="/blobs/x", sha256=hashlib.sha256(data).hexdigest(), size=len(data), name="d")
    try:
        await client.download(ref, dest)
    finally:
        await client.close()


async def test_a_download_cut_short_is_retried(aiohttp_server: Any, tmp_path: Path) -> None:
    data = b"shard bytes " * 1000
    hits = {"n": 0}

    async def blob(request: web.Request) -> web.StreamResponse:
        hits["n"] += 1
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        if hits["n"] == 1:  # the coordinator dies mid-response: half the body, then EOF
            await resp.write(data[: len(data) // 2])
            request.transport.close()  # type: ignore[union-attr]
            return resp
        await resp.write(data)
        return resp

    await _download(aiohttp_server, blob, data, tmp_path / "d")
    assert hits["n"] == 2 and (tmp_path / "d").read_bytes() == data


async def test_a_cut_download_asks_for_the_rest_only(aiohttp_server: Any, tmp_path: Path) -> None:
    data = bytes(range(256)) * 4000
    asked: list[str | None] = []

    async def blob(request: web.Request) -> web.StreamResponse:
        asked.append(request.headers.get("Range"))
        first = int(asked[-1][6:-1]) if asked[-1] else 0
        resp = web.StreamResponse(status=206 if first else 200)
        resp.content_length = len(data) - first
        await resp.prepare(request)
        if len(asked) == 1:  # the link drops a third of the way in
            await resp.write(data[: len(data) // 3])
            request.transport.close()  # type: ignore[union-attr]
            return resp
        await resp.write(data[first:])
        return resp

    await _download(aiohttp_server, blob, data, tmp_path / "d")
    assert (tmp_path / "d").read_bytes() == data
    assert asked[0] is None and asked[1] is not None
    assert 0 < int(asked[1][6:-1]) <= len(data) // 3  # what arrived was kept


async def test_a_cut_upload_sends_the_rest_from_where_the_coordinator_is(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    data = bytes(range(256)) * 8000
    held = bytearray()
    offsets: list[str] = []
    received = [0]

    async def put(request: web.Request) -> web.Response:
        offsets.append(request.headers["Upload-Offset"])
        assert request.headers["Upload-Length"] == str(len(data))
        if int(offsets[-1]) != len(held):
            return web.json_response({"code": "upload_offset", "message": "no"}, status=409)
        async for chunk in request.content.iter_chunked(1 << 16):
            received[0] += len(chunk)
            held.extend(chunk)
            if len(offsets) == 1 and len(held) >= len(data) // 2:  # the link drops midway
                request.transport.close()  # type: ignore[union-attr]
                return web.Response(status=500)
        return web.json_response({"sha256": hashlib.sha256(held).hexdigest(), "size": len(held)})

    async def head(request: web.Request) -> web.Response:
        return web.Response(headers={"Upload-Offset": str(len(held))})

    app = web.Application()
    app.router.add_put("/agent/results/t", put)
    app.router.add_route("HEAD", "/agent/results/t", head)
    server = await aiohttp_server(app)
    client = CoordinatorClient(str(server.make_url("/")), "t")
    path = tmp_path / "model.pth"
    path.write_bytes(data)
    sent: list[int] = []
    try:
        done = await client.upload("/agent/results/t?sig=s", path, sent.append)
    finally:
        await client.close()
    assert bytes(held) == data and done.sha256 == hashlib.sha256(data).hexdigest()
    assert offsets[0] == "0" and int(offsets[1]) >= len(data) // 2
    assert received[0] == len(data)  # the rest, not the whole file again
    assert sum(sent) >= len(data)  # (counted as handed to the connection)


async def test_a_transfer_waits_out_an_outage_longer_than_its_tries(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    data = b"model bytes" * 100
    hits = {"n": 0}

    async def blob(request: web.Request) -> web.StreamResponse:
        hits["n"] += 1
        if hits["n"] <= 10:  # a router restarting: more cut connections than six tries
            request.transport.close()  # type: ignore[union-attr]
        return web.Response(body=data)

    await _download(aiohttp_server, blob, data, tmp_path / "d")
    assert hits["n"] == 11 and (tmp_path / "d").read_bytes() == data


async def test_nothing_of_the_http_library_escapes_the_client(unused_tcp_port: int) -> None:
    """A coordinator that is not there is one node error, retriable, for every call."""
    client = CoordinatorClient(f"http://127.0.0.1:{unused_tcp_port}/", "gxn_token")
    try:
        for call in (
            lambda: client.request_task(0),
            lambda: client.heartbeat(HeartbeatRequest()),
            lambda: client.complete(CompleteTaskRequest(task_id="t", lease_token="l")),
        ):
            with pytest.raises(TransportError) as caught:
                await call()
            assert caught.value.retriable and "Cannot connect" in str(caught.value)
    finally:
        await client.close()

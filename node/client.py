"""The node's HTTP client: one aiohttp session, explicit timeouts, retries for idempotent calls."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import aiohttp
import msgspec

from gridx.node.errors import CoordinatorError, IntegrityError, TransportError
from gridx.schemas.agent import (
    BlobRef,
    CompleteTaskRequest,
    FailTaskRequest,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
    TaskAck,
    TaskAssignment,
    UploadLink,
    UploadLinkRequest,
    UploadResponse,
)
from gridx.schemas.errors import ErrorBody

log = logging.getLogger("gridx.node")
T = TypeVar("T")
CHUNK = 1 << 20
FRESH_LINK_S = 60.0
"""A task that ran longer asks for a fresh upload link before uploading (links live
`GRIDX_SIGNED_URL_S` on the coordinator and S3, 15 minutes by default; a Supabase project chooses
its own); one refused as expired is replaced after the fact."""


async def _answer(resp: aiohttp.ClientResponse, kind: type[T]) -> T | None:
    """A response's body as `kind`; None for 204.

    Raises:
        CoordinatorError: the coordinator answered with an error.
    """
    payload = await resp.read()
    if resp.status == 204:
        return None
    if resp.status >= 400:
        raise CoordinatorError(resp.status, _error(payload, resp.status))
    return msgspec.json.decode(payload, type=kind)


def backoff(attempt: int, base: float = 0.25, cap: float = 10.0) -> float:
    """Capped exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**attempt))


@contextlib.contextmanager
def transport(what: str) -> Iterator[None]:
    """aiohttp's errors and timeouts as `TransportError`: nothing of the HTTP library escapes
    the client."""
    try:
        yield
    except aiohttp.ClientError as exc:
        cut = isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError)
        raise TransportError(what, exc, retriable=cut) from exc
    except TimeoutError as exc:
        raise TransportError(what, exc, retriable=True) from exc


TRANSFER_PATIENCE_S = 90.0
"""How long a task's download or upload keeps trying through a dead link (a home router's
restart): resumed where it stopped, it loses nothing by waiting, and the lease decides."""


async def retrying(
    call: Callable[[], Awaitable[T]], what: str, tries: int = 6, patience_s: float = 0.0
) -> T:
    """Retry an idempotent call on connection trouble (including a response cut short, as when
    the coordinator restarts mid-download) and 5xx answers: `tries` times, and while the
    trouble is the connection, for at least `patience_s` after the first failure (a
    coordinator that answers 5xx is up: it gets `tries`)."""
    attempt, first_failure = 0, 0.0
    while True:
        try:
            return await call()
        except TransportError as exc:
            if not exc.retriable:
                raise
            problem: Exception = exc
        except CoordinatorError as exc:
            if exc.status < 500:
                raise
            problem = exc
        attempt += 1
        first_failure = first_failure or time.monotonic()
        waited = time.monotonic() - first_failure
        if attempt >= tries and (isinstance(problem, CoordinatorError) or waited >= patience_s):
            raise problem
        delay = backoff(min(attempt - 1, 8))
        log.warning("%s failed (%s); retrying in %.2fs", what, problem, delay)
        await asyncio.sleep(delay)


class CoordinatorClient:
    """Typed calls to the coordinator's `/agent/*` routes."""

    def __init__(self, base_url: str, token: str = "", ca_file: str = "") -> None:
        """`ca_file`: trust this CA for an https coordinator (default: the system's trust)."""
        self.base_url = base_url.rstrip("/") + "/"
        self.token = token
        tls = ssl.create_default_context(cafile=ca_file or None)
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=60),
            connector=aiohttp.TCPConnector(ssl=tls),
        )

    async def close(self) -> None:
        """Close the session."""
        await self.session.close()

    def _url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/") if not path.startswith("http") else path)

    def _headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def _post(
        self, path: str, body: object, kind: type[T], token: str | None = None, **params: str
    ) -> T | None:
        with transport(path):
            async with self.session.post(
                self._url(path),
                data=msgspec.json.encode(body),
                headers={**self._headers(token), "Content-Type": "application/json"},
                params=params or None,
            ) as resp:
                return await _answer(resp, kind)

    async def register(self, enrolment_key: str, req: RegisterRequest) -> RegisterResponse:
        """Enrol this node (once)."""
        out = await retrying(
            lambda: self._post("/agent/register", req, RegisterResponse, token=enrolment_key),
            "register",
        )
        assert out is not None
        return out

    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResponse:
        """Report liveness and running tasks."""
        out = await self._post("/agent/heartbeat", req, HeartbeatResponse)
        assert out is not None
        return out

    async def request_task(self, wait_s: float) -> TaskAssignment | None:
        """Long-poll for a task; None when none became ready."""
        timeout = aiohttp.ClientTimeout(total=wait_s + 30, connect=10)
        with transport("request_task"):
            async with self.session.post(
                self._url("/agent/request_task"),
                params={"wait_s": str(wait_s)},
                headers=self._headers(),
                timeout=timeout,
            ) as resp:
                return await _answer(resp, TaskAssignment)

    async def complete(self, req: CompleteTaskRequest) -> TaskAck:
        """Complete a task (idempotent through the lease token, so it is retried)."""
        out = await retrying(lambda: self._post("/agent/complete_task", req, TaskAck), "complete")
        assert out is not None
        return out

    async def upload_link(self, req: UploadLinkRequest) -> str:
        """A fresh link to PUT the task's result to."""
        out = await retrying(
            lambda: self._post("/agent/upload_link", req, UploadLink), "upload link"
        )
        assert out is not None
        return out.upload_url

    async def upload_result(
        self, task: TaskAssignment, path: Path, old: bool, sent: Callable[[int], None]
    ) -> str:
        """PUT a task's result; its sha256. Through a fresh link when the task is `old` (it ran
        past `FRESH_LINK_S`) or its link is refused as expired (a 4xx from the store)."""
        link = UploadLinkRequest(task_id=task.task_id, lease_token=task.lease_token)
        url = await self.upload_link(link) if old else task.upload_url
        try:
            return (await self.upload(url, path, sent)).sha256
        except CoordinatorError as exc:
            if exc.status not in (400, 401, 403):
                raise
            log.info(
                "task %s: its upload link was refused (%s); asking for another", task.task_id, exc
            )
            return (await self.upload(await self.upload_link(link), path, sent)).sha256

    async def fail(self, req: FailTaskRequest) -> TaskAck | None:
        """Give a task up; None when the coordinator no longer lets us (lease gone)."""
        try:
            return await retrying(lambda: self._post("/agent/fail_task", req, TaskAck), "fail")
        except CoordinatorError as exc:
            if exc.status == 409:
                return None
            raise

    async def download(self, ref: BlobRef, dest: Path) -> None:
        """Fetch a task input to `dest` and check its sha256 and size. A try cut short leaves
        what arrived, and the next asks for the rest (`Range`; a server that answers with the
        whole file instead is read from the start).

        Raises:
            IntegrityError: the bytes do not match.
        """
        dest.unlink(missing_ok=True)

        async def once() -> None:
            have = dest.stat().st_size if dest.exists() else 0
            ask = {"Range": f"bytes={have}-"} if 0 < have < ref.size else {}
            with transport(f"download {ref.name}"):
                async with self.session.get(self._url(ref.url), headers=ask) as resp:
                    if resp.status >= 400:
                        raise CoordinatorError(resp.status, _error(await resp.read(), resp.status))
                    resumed = bool(ask) and resp.status == 206
                    digest, size = await asyncio.to_thread(_hashed, dest if resumed else None)
                    with dest.open("ab" if resumed else "wb") as fh:
                        async for chunk in resp.content.iter_chunked(CHUNK):
                            digest.update(chunk)
                            size += len(chunk)
                            fh.write(chunk)
            if digest.hexdigest() != ref.sha256 or size != ref.size:
                dest.unlink(missing_ok=True)  # (the next try starts over)
                raise IntegrityError(f"{ref.name}: sha256/size mismatch; refusing to run it")

        await retrying(once, f"download {ref.name}", patience_s=TRANSFER_PATIENCE_S)

    async def upload(
        self, url: str, path: Path, sent: Callable[[int], None] | None = None
    ) -> UploadResponse:
        """PUT a result file to its signed URL: the coordinator's route or, with object storage,
        a presigned bucket URL (which answers no JSON). Retries are safe: the coordinator takes
        the file by its hash, which is computed here and checked there. To the coordinator's
        route the upload resumes: a try cut short is followed by one that sends the rest from
        what the coordinator says it holds (`resumable`). `sent(n)`: n more bytes went out.
        """
        digest, size = await asyncio.to_thread(_hashed, path)
        done = UploadResponse(sha256=digest.hexdigest(), size=size)
        resumable = urlsplit(self._url(url)).path.startswith(RESULTS_ROUTE)
        tries = 0

        async def once() -> UploadResponse:
            nonlocal tries
            offset = await self._held(url) if resumable and tries else 0
            tries += 1
            headers = {"Content-Type": "application/octet-stream"}
            headers["Content-Length"] = str(size - offset)  # (a bucket refuses a chunked PUT)
            if resumable:
                headers |= {"Upload-Offset": str(offset), "Upload-Length": str(size)}
            with transport("upload"):
                async with self.session.put(
                    self._url(url), data=_chunks(path, offset, sent), headers=headers
                ) as resp:
                    payload = await resp.read()
            if resp.status >= 400:
                error = _error(payload, resp.status)
                if error.code == "upload_offset":  # not where the coordinator's copy ends: ask
                    raise TransportError("upload", ValueError(error.message), retriable=True)
                raise CoordinatorError(resp.status, error)
            return done

        return await retrying(once, "upload", patience_s=TRANSFER_PATIENCE_S)

    async def _held(self, url: str) -> int:
        """How much of this upload the coordinator holds (0 where it cannot say)."""
        with transport("upload offset"):
            async with self.session.head(self._url(url)) as resp:
                offset = resp.headers.get("Upload-Offset", "0")
        return int(offset) if resp.status == 200 and offset.isdigit() else 0


RESULTS_ROUTE = "/agent/results/"
"""The coordinator's own upload route (resumable), as opposed to a store's presigned link."""


def _hashed(path: Path | None) -> tuple[hashlib._Hash, int]:
    """A sha256 fed with the file (fresh for None), and the bytes it read."""
    digest = hashlib.sha256()
    size = 0
    if path is not None:
        with path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
    return digest, size


async def _chunks(
    path: Path, offset: int, sent: Callable[[int], None] | None
) -> AsyncIterator[bytes]:
    """The file from `offset`, a chunk at a time (counted as it goes)."""
    with path.open("rb") as fh:
        fh.seek(offset)
        while chunk := await asyncio.to_thread(fh.read, CHUNK):
            yield chunk
            if sent is not None:
                sent(len(chunk))


def _error(payload: bytes, status: int) -> ErrorBody:
    try:
        return msgspec.json.decode(payload, type=ErrorBody)
    except msgspec.DecodeError:
        text = payload[:200].decode("utf-8", "replace")
        return ErrorBody(code=f"http_{status}", message=text)

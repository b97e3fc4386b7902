"""Resumable uploads (the tus protocol, 1.0.0) to Supabase Storage, for files its standard upload
would refuse: the file goes up in chunks, and a chunk lost to a dropped connection is sent
again from the offset the server says it holds.
"""

from __future__ import annotations

import base64
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import anyio
import httpx

CHUNK = 6 << 20
"""Supabase's resumable endpoint takes chunks of exactly 6 MiB (the last may be shorter)."""
TRIES = 5
"""Dropped connections survived per chunk before the upload gives up."""
TUS = {"Tus-Resumable": "1.0.0"}


def _metadata(fields: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())


def refused(what: str, resp: httpx.Response) -> RuntimeError:
    return RuntimeError(f"{what}: Supabase Storage answered {resp.status_code} {resp.text[:300]}")


async def upload(
    http: httpx.AsyncClient, endpoint: str, path: Path, bucket: str, key: str, chunk: int = CHUNK
) -> None:
    """Upload `path` to `bucket/key` (replacing what is there) through the tus endpoint.

    Raises:
        RuntimeError: the server refused the upload (its status and message included).
        httpx.TransportError: the connection kept dropping past `TRIES` tries of one chunk.
    """
    size = path.stat().st_size
    meta = {"bucketName": bucket, "objectName": key, "contentType": "application/octet-stream"}
    created = await http.post(
        endpoint,
        headers={
            **TUS,
            "Upload-Length": str(size),
            "Upload-Metadata": _metadata(meta),
            "x-upsert": "true",
        },
    )
    if created.status_code != 201:
        raise refused(f"starting the resumable upload of {key}", created)
    # the server names the upload by its path; its scheme and host are the ones it believes it
    # is behind (https behind a gateway, even where this client reached it otherwise)
    location = urljoin(endpoint, urlsplit(created.headers["location"]).path)
    offset = 0
    async with await anyio.open_file(path, "rb") as fh:
        while offset < size:
            await fh.seek(offset)
            data = await fh.read(chunk)
            offset = await _send(http, location, offset, data)


async def _send(http: httpx.AsyncClient, location: str, offset: int, data: bytes) -> int:
    """PATCH one chunk; after a dropped connection, ask where the server stands and go on from
    there. Returns the new offset."""
    for attempt in range(TRIES):
        try:
            resp = await http.patch(
                location,
                content=data,
                headers={
                    **TUS,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
        except httpx.TransportError:
            if attempt == TRIES - 1:
                raise
            await anyio.sleep(min(8.0, 0.5 * 2**attempt))
            head = await http.head(location, headers=TUS)
            if head.status_code != 200:
                raise refused("resuming the upload", head) from None
            held = int(head.headers["upload-offset"])
            if held >= offset + len(data):
                return held
            data, offset = data[held - offset :], held
            continue
        if resp.status_code != 204:
            raise refused("sending a chunk of the upload", resp)
        return int(resp.headers["upload-offset"])
    raise AssertionError("unreachable")

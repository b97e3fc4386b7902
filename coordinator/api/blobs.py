"""`/blobs`: task inputs, downloaded by nodes through signed links (local storage only; an S3
store hands out presigned links of its own). A download cut short resumes: one `Range` of
bytes is served as 206 Partial Content."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from litestar import get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter
from litestar.response import File, Stream

from gridx.coordinator.api.ranges import byte_range
from gridx.coordinator.services import dispatch
from gridx.coordinator.services.runtime import Runtime

CHUNK = 1 << 20


@get(
    "/blobs/{sha256:str}",
    tags=["agent"],
    responses={
        206: ResponseSpec(
            data_container=bytes,
            description="Partial Content: the bytes a `Range: bytes=N-[M]` asked for",
            generate_examples=False,
        )
    },
)
async def download_blob(
    rt: Runtime,
    sha256: str,
    exp: int,
    sig: str,
    task: str,
    lease: str,
    range_: str | None = Parameter(header="Range", default=None),
) -> File:
    """Download a task input through the signed link its lease came with (valid until `exp`,
    and only while that lease lasts); `Range: bytes=N-` for the rest of a cut download."""
    rt.signer.verify("GET", f"{sha256}:{task}:{lease}", exp, sig, rt.clock.now_ms())
    path = await dispatch.input_file(rt, sha256, task, lease)
    size = path.stat().st_size
    wanted = byte_range(range_, size)
    if wanted is None:
        return File(path=path, filename=sha256, headers={"Accept-Ranges": "bytes"})
    first, last = wanted
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Range": f"bytes {first}-{last}/{size}",
        "Content-Length": str(last - first + 1),
    }
    part = Stream(
        _read(path, first, last - first + 1),
        status_code=206,
        headers=headers,
        media_type="application/octet-stream",
    )
    return part  # type: ignore[return-value]  # (the route documents File, and its 206)


async def _read(path: Path, first: int, count: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as fh:
        await fh.seek(first)
        while count > 0:
            chunk = await fh.read(min(CHUNK, count))
            if not chunk:
                return
            count -= len(chunk)
            yield chunk

"""`/blobs`: task inputs, downloaded by nodes through signed links (local storage only; an S3
store hands out presigned links of its own)."""

from __future__ import annotations

from litestar import get
from litestar.response import File

from gridx.coordinator.services import dispatch
from gridx.coordinator.services.runtime import Runtime


@get("/blobs/{sha256:str}", tags=["agent"])
async def download_blob(
    rt: Runtime, sha256: str, exp: int, sig: str, task: str, lease: str
) -> File:
    """Download a task input through the signed link its lease came with (valid until `exp`,
    and only while that lease lasts)."""
    rt.signer.verify("GET", f"{sha256}:{task}:{lease}", exp, sig, rt.clock.now_ms())
    return File(path=await dispatch.input_file(rt, sha256, task, lease), filename=sha256)

"""Uploads that survive a dropped link: a node sends its result with `Upload-Offset` and
`Upload-Length` (the tus protocol's two headers), the coordinator appends what arrives to the
lease's part file and keeps it when the connection drops, `HEAD` on the same signed link says
how much it holds, and the node sends the rest from there. Once the part holds `Upload-Length`
bytes it becomes a blob like any upload (hashed, placed, attached to the task).

The part lives in the store's spool folder (`part-<hash of task and lease>`: another lease
never appends to it); a part nobody finishes is deleted by the sweeper once it has not grown
for an hour, and a full disk deletes it at once (507, as for any upload).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from gridx.coordinator.errors import BadRequest, Conflict, TooLarge
from gridx.coordinator.services.runtime import Runtime
from gridx.coordinator.storage.local import DISK_FULL, disk_full

ABANDONED_S = 3600.0
"""A part that has not grown for this long is deleted by the sweeper."""


class OffsetMismatch(Conflict):
    """The upload does not start where the coordinator's copy ends: ask (HEAD) and resume."""

    code = "upload_offset"


def part_path(rt: Runtime, task_id: str, lease: str) -> Path:
    """The part file of one lease's upload (in the store's spool folder: a rename away from
    the blobs, on local storage)."""
    tag = hashlib.sha256(f"{task_id}:{lease}".encode()).hexdigest()[:32]
    return rt.storage.tmp / f"part-{tag}"


def held(rt: Runtime, task_id: str, lease: str) -> int:
    """Bytes the coordinator holds of this lease's upload."""
    try:
        return part_path(rt, task_id, lease).stat().st_size
    except FileNotFoundError:
        return 0


async def append(
    rt: Runtime,
    task_id: str,
    lease: str,
    chunks: AsyncIterator[bytes],
    offset: int,
    length: int,
) -> Path | None:
    """Append a request body to the lease's part; the part once it holds `length` bytes, else
    None (what arrived is kept whatever happens to the connection).

    Raises:
        TooLarge: `length` is over the result cap, or the body runs past it.
        OffsetMismatch: `offset` is not the size of what the coordinator holds.
        StorageFull: the disk is full (the part is deleted: nothing is kept).
    """
    limit = rt.settings.max_result_bytes
    if length > limit:
        raise TooLarge(f"the result file is {length} bytes, over the limit of {limit} bytes")
    path = part_path(rt, task_id, lease)
    have = held(rt, task_id, lease)
    if offset != have:
        raise OffsetMismatch(
            f"the upload starts at byte {offset}, but the coordinator holds {have}: "
            "resume from there (HEAD this link says so in Upload-Offset)"
        )
    try:
        async with await anyio.open_file(path, "ab") as fh:
            async for chunk in chunks:
                have += len(chunk)
                if have > length:
                    raise BadRequest(f"the body runs past Upload-Length ({length} bytes)")
                await fh.write(chunk)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            path.unlink(missing_ok=True)
            raise disk_full("the result") from exc
        raise
    return path if have == length else None


def sweep(rt: Runtime) -> int:
    """Delete parts that stopped growing `ABANDONED_S` ago; how many."""
    before = time.time() - ABANDONED_S
    gone = 0
    for part in rt.storage.tmp.glob("part-*"):
        try:
            if part.stat().st_mtime < before:
                part.unlink()
                gone += 1
        except FileNotFoundError:
            pass
    return gone

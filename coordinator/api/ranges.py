"""The headers of transfers that resume: `Upload-Offset` / `Upload-Length` of a resumable upload
(as the tus protocol names them) and a download's `Range` (one range of bytes, RFC 9110)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from gridx.coordinator.errors import BadRequest, GridXError

_RANGE = re.compile(r"bytes=(\d{1,19})-(\d{0,19})")


class RangeNotSatisfiable(GridXError):
    """The range asked for starts past the end of the file."""

    status_code = 416
    code = "range_not_satisfiable"


def upload_part(headers: Mapping[str, str]) -> tuple[int, int] | None:
    """(offset, length) of a resumable upload's body; None for a whole file in one body.

    Raises:
        BadRequest: one header without the other, or not a count of bytes.
    """
    offset, length = headers.get("upload-offset"), headers.get("upload-length")
    if offset is None and length is None:
        return None
    if offset is None or length is None or not (offset.isdigit() and length.isdigit()):
        raise BadRequest("a resumable upload sends Upload-Offset and Upload-Length, in bytes")
    return int(offset), int(length)


def offset_header(held: int) -> dict[str, str]:
    """What a resumable upload's answers say: how much the coordinator holds."""
    return {"Upload-Offset": str(held)}


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The bytes [first, last] one `Range: bytes=first-[last]` asks of a file of `size` bytes;
    None for the whole file (no header, or a form this server does not serve: several ranges,
    a suffix; RFC 9110 lets a server answer those with the whole file).

    Raises:
        RangeNotSatisfiable: the range starts at or past the end.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    if first >= size:
        raise RangeNotSatisfiable(
            f"the file has {size} bytes; a range may start at most at {size - 1}"
        )
    if last < first:
        return None
    return first, last

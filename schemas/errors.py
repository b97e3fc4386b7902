"""Error bodies: every non-2xx JSON answer has this shape."""

from __future__ import annotations

import msgspec


class ErrorBody(msgspec.Struct, kw_only=True):
    """A stable machine-readable `code`, a human `message`, and the offending `field` if any."""

    code: str
    message: str
    field: str | None = None

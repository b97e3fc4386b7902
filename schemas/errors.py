"""Error bodies: every non-2xx JSON answer has this shape."""

from __future__ import annotations

import msgspec


class FieldError(msgspec.Struct, kw_only=True):
    """One invalid field."""

    field: str
    message: str


class ErrorBody(msgspec.Struct, kw_only=True):
    """A stable machine-readable `code`, a human `message`, and the offending `field` if any;
    `errors` lists every invalid field when there are several."""

    code: str
    message: str
    field: str | None = None
    errors: list[FieldError] = []

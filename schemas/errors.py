"""Error bodies: every non-2xx JSON answer has this shape."""

from __future__ import annotations

import re

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


_PATH = re.compile(r"at `\$\.?([^`\[]*)")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def field_of(message: str) -> str | None:
    """The dotted field a msgspec validation message is about (`strategy.f`), if it names one."""
    path = _PATH.search(message)
    unknown = _UNKNOWN.search(message)
    parts = [p for p in (path.group(1) if path else "", unknown.group(1) if unknown else "") if p]
    return ".".join(parts) or None

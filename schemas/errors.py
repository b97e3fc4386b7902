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


_AT = re.compile(r" - at `\$[^`]*`")
_TYPE_NAMES = {
    "int": "a whole number",
    "float": "a number",
    "str": "text",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _type(match: re.Match[str]) -> str:
    return _TYPE_NAMES.get(match.group(1), match.group(1))


def plain(message: str) -> str:
    """A msgspec validation message as people read it: ``Expected `int` >= 1 - at `$.rounds` ``
    is `must be a whole number >= 1`; ``Expected `int`, got `str` `` is `must be a whole number,
    not text`."""
    text = _AT.sub("", message)
    text = re.sub(r"^Expected `(\w+)`", lambda m: f"must be {_type(m)}", text)
    text = re.sub(r", got `(\w+)`", lambda m: f", not {_type(m)}", text)
    text = re.sub(r"^Invalid enum value ", "is not one of the allowed values: ", text)
    return text.replace(" of length <= ", " of at most ").replace(" of length >= ", " of at least ")

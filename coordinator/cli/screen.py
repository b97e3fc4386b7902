"""Printing for people: what the coordinator sends back (names, emails, errors, a task's
stderr, metric names) is untrusted text, and a terminal obeys what it is sent. A newline in a
key's name would print a forged row in `gridx audit`; an escape sequence could rewrite the
screen. Every line meant for people goes through `line` (one line: every control character
shown as `\\xNN`) or `text` (newlines and tabs kept); `--json` output is JSON-escaped already.
"""

from __future__ import annotations

import re

import click

_BIDI = "\u200e\u200f\u202a-\u202e\u2066-\u2069"  # (text that reads in another order)
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(value: object) -> str:
    """`value` as one printable line."""
    return _CONTROL.sub(_shown, str(value))


def line(value: object, err: bool = False) -> None:
    """Print `value` as exactly one line."""
    click.echo(clean(value), err=err)


def text(value: object, err: bool = False) -> None:
    """Print `value`, its own line breaks kept, nothing else a terminal would obey."""
    click.echo(_CONTROL_BUT_LINES.sub(_shown, str(value)), err=err)

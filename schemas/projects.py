"""A project: a folder of files submitted as a job's code, shipped as one zip archive. The
rules its members meet, shared by the CLI that packs it, the coordinator that checks it at
submit and the node that unpacks it (each checks again: the archive is untrusted input)."""

from __future__ import annotations

from pathlib import PurePosixPath

MAX_FILES = 5000
"""Files a project may hold."""
DEFAULT_ENTRY = "train.py"
ENTRY_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.py$"
"""The entry point: a script at the project's top level (run as `python ENTRY` there)."""


def member_problem(name: str) -> str | None:
    """Why an archive member's name is not a plain relative path inside the project (None:
    it is)."""
    path = PurePosixPath(name)
    if not name or name.startswith("/") or "\\" in name:
        return f"{name!r} is not a relative path with / separators"
    if ".." in path.parts or any(not ch.isprintable() for ch in name):
        return f"{name!r} climbs out of the project or holds control characters"
    if len(name) > 1000 or len(path.parts) > 32:
        return f"{name[:100]!r}... is too long or too deep"
    return None

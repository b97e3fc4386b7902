"""Sizes as people read them, the same on the coordinator, the node and the CLI."""

from __future__ import annotations


def human(size: float) -> str:
    """Bytes for people: 950 B, 12.3 MB, 1.2 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")

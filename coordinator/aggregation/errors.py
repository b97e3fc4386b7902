"""The aggregation side's error (torch-free, so the parent process can unpickle it from a pool
worker without loading torch)."""

from __future__ import annotations


class WeightsError(ValueError):
    """A weight file that cannot be used; the message says why."""

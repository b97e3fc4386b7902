"""The aggregation side's error, in the coordinator's one error tree (torch-free, so the parent
process can unpickle it from a pool worker without loading torch)."""

from __future__ import annotations

from gridx.coordinator.errors import InvalidWeights


class WeightsError(InvalidWeights):
    """A weight file that cannot be used; the message says why (422 `invalid_weights` if it ever
    reaches a client unhandled)."""


class UnclippedUpdate(WeightsError):
    """An update over the job's clip norm from a node that was to clip it (dp.client_clip): the
    node's fault, not the script's (another node, clipping as asked, may take the shard)."""

"""Redundant computing (BOINC's defence): do the copies of one shard's update agree?

Copies of a shard are trained by nodes of different owners from the same inputs and seed; honest
ones come out equal, or within a tolerance when training is not bit-reproducible. The copies
that a majority agrees with are accepted; the others are flagged.
"""

from __future__ import annotations

import math

import torch

from gridx.coordinator.aggregation.tensorfile import TensorFile


def distance(a: str, b: str, max_bytes: int) -> float:
    """Relative L2 distance of two updates, ||a - b|| / max(||a||, ||b||), over their floating
    tensors (any other tensor that differs makes them infinitely far apart). Files must share a
    signature (checked when each was accepted)."""
    diff = norm_a = norm_b = 0.0
    with TensorFile(a, max_bytes) as fa, TensorFile(b, max_bytes) as fb:
        for key in fa.names():
            ta, tb = fa.get(key), fb.get(key)
            if ta.is_floating_point():
                x, y = ta.double(), tb.double()
                diff += float(torch.sum((x - y) ** 2))
                norm_a += float(torch.sum(x * x))
                norm_b += float(torch.sum(y * y))
                del x, y
            elif not torch.equal(ta, tb):
                return math.inf
            del ta, tb
            fa.release(key)
            fb.release(key)
    scale = max(math.sqrt(norm_a), math.sqrt(norm_b))
    if scale == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return math.sqrt(diff) / scale


def distances(paths: list[str], max_bytes: int) -> list[list[float]]:
    """The symmetric matrix of `distance` between every two files."""
    n = len(paths)
    out = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            out[i][j] = out[j][i] = distance(paths[i], paths[j], max_bytes)
    return out

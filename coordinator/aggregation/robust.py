"""Byzantine-robust rules: coordinate-wise median and trimmed mean, Krum and Multi-Krum.

Coordinate-wise rules read the clients block by block (N rows of at most `BLOCK_BYTES` together),
so memory is O(N x block), never N models; order statistics come from a pruned sorting network
(`networks.py`). Krum's pairwise distances come from a Gram matrix accumulated block by block:
||a - b||^2 = G_aa + G_bb - 2 G_ab, computed on differences to the first client (distances do
not change, cancellation does).
"""

from __future__ import annotations

import torch

from gridx.coordinator.aggregation.clients import ClientSet, accumulation_dtype
from gridx.coordinator.aggregation.fedavg import cast_back, weighted_mean
from gridx.coordinator.aggregation.networks import order_statistics

BLOCK_BYTES = 4 << 20  # N rows of a block stay in cache while the network runs over them


def _block_len(cs: ClientSet, block_bytes: int = BLOCK_BYTES) -> int:
    return max(4096, block_bytes // (4 * cs.n))


def _coordinatewise(cs: ClientSet, key: str, ranks: tuple[int, ...]) -> torch.Tensor:
    """Mean of the given order statistics, per coordinate, block by block."""
    dtype, shape = cs.specs[key]
    acc_dtype = accumulation_dtype(dtype)
    numel = 1
    for d in shape:
        numel *= d
    out = torch.empty(numel, dtype=acc_dtype)
    step = _block_len(cs)
    for lo in range(0, numel, step):
        hi = min(numel, lo + step)
        picked = order_statistics(list(cs.block(key, lo, hi, acc_dtype)), ranks)
        total = picked[0].clone() if len(picked) > 1 else picked[0]
        for extra in picked[1:]:
            total.add_(extra)
        out[lo:hi] = total.div_(len(picked)) if len(picked) > 1 else total
    cs.release()
    return cast_back(out.view(shape), dtype)


def median(cs: ClientSet, key: str) -> torch.Tensor:
    """Coordinate-wise median (the mean of the two middle values for an even N, as np.median)."""
    if not cs.is_float(key):
        return weighted_mean(cs, key)
    n = cs.n
    return _coordinatewise(cs, key, tuple(sorted({(n - 1) // 2, n // 2})))


def trim_count(n: int, beta: float) -> int:
    """How many values trimmed mean drops at each end (as Flower's `_trim_mean`)."""
    return int(beta * n)


def trimmed_mean(cs: ClientSet, key: str, beta: float) -> torch.Tensor:
    """Coordinate-wise mean of the values left after dropping int(beta*N) at each end."""
    if not cs.is_float(key):
        return weighted_mean(cs, key)
    k = trim_count(cs.n, beta)
    return _coordinatewise(cs, key, tuple(range(k, cs.n - k)))


def gram(cs: ClientSet) -> torch.Tensor:
    """The N x N Gram matrix of the clients' float coordinates, centred per coordinate."""
    g = torch.zeros(cs.n, cs.n, dtype=torch.float64)
    step = _block_len(cs, 8 * BLOCK_BYTES)  # a matmul gains from long rows
    for key in cs.names():
        if not cs.is_float(key):
            continue
        dtype, shape = cs.specs[key]
        numel = 1
        for d in shape:
            numel *= d
        for lo in range(0, numel, step):
            x = cs.block(key, lo, min(numel, lo + step), accumulation_dtype(dtype))
            x -= x[0].clone()  # distances are translation-invariant; this avoids cancellation
            g += (x @ x.T).to(torch.float64)
        cs.release()
    return g


def krum_select(g: torch.Tensor, f: int, m: int) -> list[int]:
    """Indices chosen by (Multi-)Krum from a Gram matrix, best score first (ties: lower index).

    Each client's score is the sum of squared distances to its N - f - 2 nearest others.
    """
    n = g.shape[0]
    diag = torch.diagonal(g)
    dist = (diag[:, None] + diag[None, :] - 2 * g).clamp_min_(0)
    closest = max(1, n - f - 2)
    scores = []
    for i in range(n):
        others = torch.cat([dist[i, :i], dist[i, i + 1 :]])
        scores.append(float(torch.sort(others, stable=True).values[:closest].sum()))
    order = sorted(range(n), key=lambda i: (scores[i], i))
    return order[:m]

"""Sorting networks for coordinate-wise order statistics over a few clients.

Sorting N values per coordinate with `torch.sort` or `np.median(axis=0)` runs at a few hundred
MB/s. A comparator network does the same with element-wise min/max over whole rows, which run at
memory speed; pruned to the ranks a rule needs (the median needs two), it is cheaper still.
"""

from __future__ import annotations

import functools

import torch

Comparators = tuple[tuple[int, int], ...]


@functools.cache
def batcher(n: int) -> Comparators:
    """Batcher's odd-even merge sort for `n` wires (padded to a power of two, padding dropped).

    Padding wires sit above every real wire and hold +inf in effect: a comparator between a real
    and a padding wire never moves the real value, so it is simply left out.
    """
    size = 1
    while size < n:
        size *= 2
    out: list[tuple[int, int]] = []

    def merge(lo: int, hi: int, r: int) -> None:
        step = r * 2
        if step < hi - lo:
            merge(lo, hi, step)
            merge(lo + r, hi, step)
            out.extend((i, i + r) for i in range(lo + r, hi - r, step))
        else:
            out.append((lo, lo + r))

    def sort(lo: int, hi: int) -> None:
        if hi - lo >= 1:
            mid = lo + (hi - lo) // 2
            sort(lo, mid)
            sort(mid + 1, hi)
            merge(lo, hi, 1)

    sort(0, size - 1)
    return tuple((i, j) for i, j in out if j < n)


@functools.cache
def pruned(n: int, ranks: tuple[int, ...]) -> Comparators:
    """The comparators of `batcher(n)` that can change the values at `ranks` (walked backwards)."""
    needed = set(ranks)
    keep: list[tuple[int, int]] = []
    for i, j in reversed(batcher(n)):
        if i in needed or j in needed:
            keep.append((i, j))
            needed |= {i, j}
    return tuple(reversed(keep))


def order_statistics(rows: list[torch.Tensor], ranks: tuple[int, ...]) -> list[torch.Tensor]:
    """For each coordinate, the values of rank `ranks` among the rows (rank 0 = smallest).

    Works in place on `rows` (callers pass copies) with one scratch row; NaN-free input assumed
    (uploads are checked for finiteness first).
    """
    rows = list(rows)
    scratch = torch.empty_like(rows[0])
    for i, j in pruned(len(rows), ranks):
        torch.minimum(rows[i], rows[j], out=scratch)
        torch.maximum(rows[i], rows[j], out=rows[j])
        rows[i], scratch = scratch, rows[i]
    return [rows[r] for r in ranks]

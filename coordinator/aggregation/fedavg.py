"""Sample-weighted means, one tensor at a time, and the rule for non-float tensors.

Clients are summed in the order given (the engine sorts them by shard) into an accumulator of a
fixed dtype (see `accumulation_dtype`), so the same inputs give a bit-identical result whatever
order they arrived in. Each client's tensor is read straight from its memory-mapped file.

Non-float tensors (e.g. BatchNorm's `num_batches_tracked`) get the same weighted mean, rounded
to the nearest integer; booleans become the weighted majority. Every strategy uses this rule for
them.
"""

from __future__ import annotations

import torch

from gridx.coordinator.aggregation.clients import ClientSet, accumulation_dtype


def weighted_mean(
    cs: ClientSet, key: str, indices: list[int] | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """The sample-weighted mean of `key` over `indices` (default: every client), in key's dtype.

    Args:
        out: a float32/float64 tensor of key's shape and accumulation dtype to sum into (reused
            memory is cheaper than fresh pages); a new one is made when None.
    """
    chosen = list(range(cs.n)) if indices is None else indices
    dtype, shape = cs.specs[key]
    acc_dtype = accumulation_dtype(dtype) if dtype.is_floating_point else torch.float64
    total = float(sum(cs.weights[i] for i in chosen))
    acc = torch.zeros(shape, dtype=acc_dtype) if out is None else out.zero_()
    for i in chosen:
        value = cs.tensor(i, key)
        acc.add_(value, alpha=cs.weights[i] / total)
        del value
        cs.files[i].release(key)
    return cast_back(acc, dtype)


def cast_back(acc: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """An accumulator in the tensor's own dtype (rounded for integers, majority for booleans)."""
    if dtype == torch.bool:
        return acc >= 0.5
    if dtype.is_floating_point:
        return acc if acc.dtype == dtype else acc.to(dtype)
    return torch.round(acc).to(dtype)

"""Federated averaging, streamed one client file at a time.

Memory stays about one model (the float64 accumulator) plus one client, whatever the number of
clients. Clients are summed in the order given (the caller passes them by shard), in float64, so
the same inputs give a bit-identical model whatever order they arrived in.

Non-float tensors (e.g. BatchNorm's `num_batches_tracked`) are averaged the same way and then
rounded to the nearest integer; booleans become the weighted majority.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from gridx.coordinator.aggregation.weights import (
    StateDict,
    WeightsError,
    check_finite,
    load_state,
    signature,
)


def fedavg_files(
    clients: list[tuple[str, float]],
    out_pth: str,
    out_safetensors: str,
    max_bytes: int,
) -> str:
    """Sample-weighted average of client weight files; writes `.pth` and `.safetensors`.

    Args:
        clients: [(path, sample weight), ...] in a fixed order (by shard).
        out_pth: where to write the torch state_dict.
        out_safetensors: where to write the same tensors as safetensors.
        max_bytes: size cap for each client file.

    Returns:
        The signature of the averaged model.

    Raises:
        WeightsError: a client file is unusable or does not match the first one.
    """
    if not clients:
        raise WeightsError("no client updates to aggregate")
    total = float(sum(w for _, w in clients))
    if total <= 0:
        raise WeightsError("sample weights must add up to more than zero")
    acc: dict[str, torch.Tensor] = {}
    templates: dict[str, torch.Tensor] = {}
    expected: str | None = None
    for path, weight in clients:
        state = load_state(Path(path), max_bytes)
        sig = signature(state)
        if expected is None:
            expected = sig
            templates = {k: torch.empty(0, dtype=v.dtype) for k, v in state.items()}
            acc = {k: torch.zeros(v.shape, dtype=torch.float64) for k, v in state.items()}
        elif sig != expected:
            raise WeightsError(f"{Path(path).name}: keys, shapes or dtypes differ from the others")
        check_finite(state)
        share = weight / total
        for key, value in state.items():
            acc[key].add_(value.to(torch.float64), alpha=share)
        del state
    result = _cast_back(acc, templates)
    torch.save(result, out_pth)
    save_file({k: v.contiguous() for k, v in result.items()}, out_safetensors)
    return signature(result)


def _cast_back(acc: dict[str, torch.Tensor], templates: dict[str, torch.Tensor]) -> StateDict:
    out: StateDict = {}
    for key, total in acc.items():
        dtype = templates[key].dtype
        if dtype == torch.bool:
            out[key] = total >= 0.5
        elif dtype.is_floating_point:
            out[key] = total.to(dtype)
        else:
            out[key] = torch.round(total).to(dtype)
    return out


def weighted_metrics(items: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Sample-weighted mean of each metric that every client reported."""
    if not items:
        return {}
    common = set(items[0][0])
    for metrics, _ in items[1:]:
        common &= set(metrics)
    total = sum(w for _, w in items) or 1.0
    return {k: sum(m[k] * w for m, w in items) / total for k in sorted(common)}

"""The aggregation rules, by name: how each strategy merges one tensor of the round's clients.

A rule may first choose which clients count (`Rule.select`, as Krum does); then `Rule.merge`
makes each tensor from the clients (in shard order), writing into `out` when it can. Server
optimizers (FedAdam and its kin, FedAvgM and DiLoCo) keep state across rounds and run on their
own path in `engine.py`. A new rule: its struct in `schemas/jobs.py`, and one line in `RULES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gridx.coordinator.aggregation import robust
from gridx.coordinator.aggregation.clients import ClientSet
from gridx.coordinator.aggregation.fedavg import weighted_mean
from gridx.schemas.strategies import Krum, Strategy, TrimmedMean

Merge = Callable[[ClientSet, str, Strategy, list[int] | None, torch.Tensor | None], torch.Tensor]
Select = Callable[[ClientSet, Strategy], list[int]]


@dataclass(frozen=True)
class Rule:
    """One aggregation rule."""

    merge: Merge
    select: Select | None = None


def _mean(
    cs: ClientSet, key: str, _: Strategy, chosen: list[int] | None, out: torch.Tensor | None
) -> torch.Tensor:
    return weighted_mean(cs, key, chosen, out=out)


def _median(
    cs: ClientSet, key: str, _: Strategy, chosen: list[int] | None, out: torch.Tensor | None
) -> torch.Tensor:
    return robust.median(cs, key)


def _trimmed_mean(
    cs: ClientSet, key: str, s: Strategy, chosen: list[int] | None, out: torch.Tensor | None
) -> torch.Tensor:
    assert isinstance(s, TrimmedMean)
    return robust.trimmed_mean(cs, key, s.beta)


def _krum(cs: ClientSet, s: Strategy) -> list[int]:
    assert isinstance(s, Krum)
    return sorted(robust.krum_select(robust.gram(cs), s.f, s.m))


RULES: dict[str, Rule] = {
    "fedavg": Rule(_mean),
    "fedprox": Rule(_mean),  # the proximal term lives in train.py
    "fedmedian": Rule(_median),
    "trimmed_mean": Rule(_trimmed_mean),
    "krum": Rule(_mean, select=_krum),
    # server optimizers: FedAvg in the first round (no input model yet), then `engine`'s path
    "fedadam": Rule(_mean),
    "fedyogi": Rule(_mean),
    "fedadagrad": Rule(_mean),
    "fedavgm": Rule(_mean),
    "diloco": Rule(_mean),
}

"""Aggregation strategies a job may ask for: the wire form of each rule and its parameters."""

from __future__ import annotations

import typing
from typing import Annotated

import msgspec

UnitFloat = Annotated[float, msgspec.Meta(ge=0, lt=1)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


class StrategyBase(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, tag_field="name"):
    """Common to every strategy."""

    clip_norm: Positive | None = None
    """Clip each client's update (its weights minus the round's input model) to this L2 norm
    before the rule applies; needs an input model, so rounds after the first."""

    @property
    def name(self) -> str:
        """The strategy's tag, e.g. "fedavg"."""
        return str(type(self).__struct_config__.tag)

    def problem(self, clients: int) -> tuple[str, str] | None:
        """A (field, message) reason this rule cannot run with `clients` per round, or None."""
        return None


class FedAvg(StrategyBase, tag="fedavg"):
    """Sample-weighted mean of the clients' weights (McMahan et al. 2017)."""


class FedProx(StrategyBase, tag="fedprox"):
    """FedAvg on the server; `mu` reaches train.py as GRIDX_PROX_MU for its proximal term."""

    mu: Annotated[float, msgspec.Meta(ge=0)] = 0.01


class FedAdam(StrategyBase, tag="fedadam"):
    """Adaptive server optimizer over the averaged update (Reddi et al. 2021)."""

    eta: Positive = 0.01
    beta1: UnitFloat = 0.9
    beta2: UnitFloat = 0.99
    tau: Positive = 1e-3


class FedYogi(FedAdam, tag="fedyogi"):
    """Like FedAdam with Yogi's additive second-moment update."""


class FedAdagrad(FedAdam, tag="fedadagrad"):
    """Like FedAdam with Adagrad's accumulated second moment."""


class FedAvgM(StrategyBase, tag="fedavgm"):
    """SGD with momentum on the averaged pseudo-gradient (Hsu et al. 2019, FedAvgM): with x the
    step's input model and avg the clients' mean, g = x - avg, b = momentum * b + g, and
    x' = x - server_lr * (g + momentum * b if nesterov else b)."""

    server_lr: Annotated[float, msgspec.Meta(gt=0, le=10)] = 1.0
    momentum: UnitFloat = 0.9
    nesterov: bool = False


class DiLoCo(FedAvgM, tag="diloco"):
    """DiLoCo's outer step (Douillard et al. 2023; prime's `diloco.py`): FedAvgM with Nesterov
    momentum 0.9 and a server learning rate of 0.7."""

    server_lr: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.7
    nesterov: bool = True


class FedMedian(StrategyBase, tag="fedmedian"):
    """Coordinate-wise median of the clients' weights (Yin et al. 2018)."""


class TrimmedMean(StrategyBase, tag="trimmed_mean"):
    """Coordinate-wise mean after dropping the `beta` fraction of lowest and highest values."""

    beta: Annotated[float, msgspec.Meta(ge=0, lt=0.5)] = 0.2


class Krum(StrategyBase, tag="krum"):
    """Krum (m = 1) or Multi-Krum (m > 1), tolerating `f` Byzantine clients (Blanchard et al.)."""

    f: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 1
    m: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1

    def problem(self, clients: int) -> tuple[str, str] | None:
        if clients <= 2 * self.f + 2:
            return "strategy.f", (
                f"Krum with f={self.f} needs more than 2f+2 = {2 * self.f + 2} clients "
                f"per round, and the job has {clients} shards"
            )
        if self.m > clients - self.f:
            return "strategy.m", f"Multi-Krum can keep at most n - f = {clients - self.f} clients"
        return None


Strategy = (
    FedAvg
    | FedProx
    | FedAdam
    | FedYogi
    | FedAdagrad
    | FedAvgM
    | DiLoCo
    | FedMedian
    | TrimmedMean
    | Krum
)
"""Every aggregation rule a job may ask for. A new rule: its struct here (in this union), and
its merge in `coordinator/aggregation/rules.py`'s `RULES`."""
ROBUST = ("fedmedian", "trimmed_mean", "krum")
"""Rules that tolerate outliers: a holder whose update is always invalid is left out of its
rounds (recorded in each round), never a reason to fail the job."""
STRATEGY_NAMES = tuple(str(t.__struct_config__.tag) for t in typing.get_args(Strategy))


MEAN_RULES = frozenset(
    {"fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm", "diloco"}
)
"""The rules built on the mean of the updates: the only ones central DP's noise calibration
(sensitivity clip_norm / n) holds for."""

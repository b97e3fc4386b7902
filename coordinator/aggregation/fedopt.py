"""Server optimizers over the averaged update: FedAdam, FedYogi, FedAdagrad, FedAvgM / DiLoCo.

With x the round's input model and avg the clients' weighted mean, the pseudo-gradient is
d = avg - x, and per coordinate (Reddi et al. 2021, "Adaptive Federated Optimization"):

    m = beta1 * m + (1 - beta1) * d
    Adam:    v = beta2 * v + (1 - beta2) * d^2
    Yogi:    v = v - (1 - beta2) * d^2 * sign(v - d^2)
    Adagrad: v = v + d^2
    x' = x + lr * m / (sqrt(v) + tau),   lr = eta * sqrt(1 - beta2^t) / (1 - beta1^t) for Adam,
                                          lr = eta otherwise (t = server steps so far, from 1)

FedAvgM and DiLoCo's outer step are SGD with momentum on the pseudo-gradient g = x - avg, as
prime's `diloco.py` sets `param.grad = original - averaged` and steps `torch.optim.SGD`:

    b = momentum * b + g
    x' = x - lr * (g + momentum * b)   with Nesterov,   x' = x - lr * b   without

m, v and b start at zero and live in a per-job state file that each round writes anew, so they
survive coordinator restarts. Round 0 has no input model: its result is the plain average, which
becomes the optimizer's starting point.
"""

from __future__ import annotations

import math

import torch


def fedopt_step(
    rule: str,
    x: torch.Tensor,
    avg: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    step: int,
    eta: float,
    beta1: float,
    beta2: float,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One server step for one tensor (float32 or float64 inputs); returns (x', m', v')."""
    d = avg - x
    m = m * beta1 + d * (1 - beta1)
    d2 = d * d
    if rule == "fedadam":
        v = v * beta2 + d2 * (1 - beta2)
        lr = eta * math.sqrt(1 - beta2**step) / (1 - beta1**step)
    elif rule == "fedyogi":
        v = v - d2 * (1 - beta2) * torch.sign(v - d2)
        lr = eta
    elif rule == "fedadagrad":
        v = v + d2
        lr = eta
    else:
        raise ValueError(f"unknown server optimizer {rule!r}")
    return x + lr * m / (v.sqrt() + tau), m, v


def sgdm_step(
    x: torch.Tensor,
    avg: torch.Tensor,
    buf: torch.Tensor,
    lr: float,
    momentum: float,
    nesterov: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One FedAvgM / DiLoCo outer step for one tensor; returns (x', b'). A zero `buf` on the
    first step is what torch's SGD does too (its first buffer is the gradient itself)."""
    g = x - avg
    buf = buf * momentum + g
    update = g + buf * momentum if nesterov else buf
    return x - update * lr, buf

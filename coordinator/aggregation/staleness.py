"""How much an asynchronous update counts for being late (FedBuff, Nguyen et al. 2022).

An update trained on the model of `s` server steps ago is merged as `discount(s) * (y - x_s)`
added to the newest model x, weighted by its rows: the step is
x' = x + sum_i(n_i * discount(s_i) * (y_i - x_{s_i})) / sum_i(n_i). The weights are not
renormalised, so late updates shrink the step instead of only their share of it. The discount is
the polynomial family of FedAsync (Xie et al. 2019): (1 + s) ** -a, a = 0.5 by default.
"""

from __future__ import annotations


def discount(staleness: int, exponent: float) -> float:
    """(1 + staleness) ** -exponent: 1 for a fresh update, 1/sqrt(2) one step late at 0.5."""
    if staleness < 0:
        raise ValueError(f"an update cannot be {staleness} steps ahead of the model")
    return float((1 + staleness) ** -exponent)

"""Central differential privacy: the noise a round adds and the privacy it spends.

Each round of a DP job is one Gaussian mechanism on the sum of the clipped updates
(sensitivity `clip_norm`, noise `noise_multiplier * clip_norm`), i.e. noise of standard deviation
`noise_multiplier * clip_norm / n` on their mean. Every selected node takes part in every round
(no sampling, so no amplification is claimed). The spend over rounds is composed by
`dp-accounting`'s RDP accountant (Google's maintained implementation, as Opacus and TF Privacy
use), never by a formula of ours.
"""

from __future__ import annotations

import functools
import math

from gridx.schemas.jobs import JobConfig, Privacy


@functools.lru_cache(maxsize=1024)
def epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """The epsilon of `rounds` rounds at `delta` (RDP accountant, Gaussian mechanism)."""
    if rounds <= 0:
        return 0.0
    # imported here: it loads numpy and scipy, which the API process otherwise never needs
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant

    accountant = rdp_privacy_accountant.RdpAccountant()
    event = dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(noise_multiplier), rounds)
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def noise_std(dp: Privacy, clients: int) -> float:
    """The standard deviation of the noise added to each coordinate of the mean of `clients`
    clipped updates."""
    return dp.noise_multiplier * dp.clip_norm / max(clients, 1)


def default_delta(config: JobConfig, rows: list[int]) -> float | None:
    """The job's delta: its own, else 1 / the rows it trains on (None: not a DP job)."""
    if config.dp is None:
        return None
    return config.dp.delta or 1.0 / max(sum(rows), 2)


def affordable(dp: Privacy, rounds: int, delta: float) -> bool:
    """Whether `rounds` rounds stay within the job's `max_epsilon` (always, without one)."""
    return dp.max_epsilon is None or epsilon(dp.noise_multiplier, rounds, delta) <= dp.max_epsilon


def budget_problem(dp: Privacy, delta: float) -> str | None:
    """Why not even one round fits the budget (None: it does)."""
    if affordable(dp, 1, delta):
        return None
    spent = epsilon(dp.noise_multiplier, 1, delta)
    return (
        f"one round already spends epsilon {spent:.3g} at delta {delta:.3g}, over max_epsilon "
        f"{dp.max_epsilon}; raise noise_multiplier or max_epsilon"
    )


def stop_note(dp: Privacy, done: int, planned: int, delta: float) -> str:
    """What a job stopped by its budget says."""
    spent = epsilon(dp.noise_multiplier, done, delta)
    nxt = epsilon(dp.noise_multiplier, done + 1, delta)
    return (
        f"stopped after round {done} of {planned}: the privacy budget max_epsilon "
        f"{dp.max_epsilon} is spent to {spent:.3g}, and round {done + 1} would take it to "
        f"{nxt:.3g} (delta {delta:.3g})"
    )


def finite(value: float) -> float | None:
    """A float JSON can carry (None for inf)."""
    return value if math.isfinite(value) else None

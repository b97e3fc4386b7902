"""Every strategy against a straightforward reference, plus a Byzantine simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridx.coordinator.aggregation.engine import aggregate
from gridx.coordinator.aggregation.networks import batcher, order_statistics
from gridx.coordinator.aggregation.rules import RULES
from gridx.coordinator.aggregation.weights import load_state
from gridx.coordinator.aggregation.work import AggregationJob
from gridx.schemas.strategies import (
    STRATEGY_NAMES,
    DiLoCo,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedYogi,
    Krum,
    Strategy,
    TrimmedMean,
)
from tests.weightfiles import write_safetensors

CAP = 50_000_000
SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def clients_of(seed: int, n: int, shapes: list[tuple[int, ...]]) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [{f"t{j}": torch.randn(s, generator=g) for j, s in enumerate(shapes)} for _ in range(n)]


def merge(
    tmp: Path,
    tag: str,
    states: list[dict[str, torch.Tensor]],
    strategy: Strategy,
    weights: list[float] | None = None,
    base: dict[str, torch.Tensor] | None = None,
    state_in: str | None = None,
):
    folder = tmp / tag
    folder.mkdir()
    files = [
        (i, str(write_safetensors(folder / f"c{i}.st", s)), (weights or [1.0] * len(states))[i])
        for i, s in enumerate(states)
    ]
    base_path = str(write_safetensors(folder / "base.st", base)) if base is not None else None
    out = folder / "out"
    out.mkdir()
    result = aggregate(
        AggregationJob(
            clients=files,
            strategy=strategy,
            out_dir=str(out),
            max_bytes=CAP,
            base_model=base_path,
            state_in=state_in,
        )
    )
    return load_state(Path(result.model_safetensors), CAP), result


def stack(states: list[dict[str, torch.Tensor]], key: str) -> np.ndarray:
    return np.stack([s[key].numpy() for s in states]).astype(np.float64)


shapes_st = st.lists(st.tuples(st.integers(1, 7), st.integers(1, 9)), min_size=1, max_size=3)


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(2, 9), shapes=shapes_st)
def test_median_matches_numpy(tmp_path_factory, seed: int, n: int, shapes) -> None:
    states = clients_of(seed, n, shapes)
    out, _ = merge(tmp_path_factory.mktemp("m"), "m", states, FedMedian())
    for key in out:
        np.testing.assert_allclose(
            out[key].numpy(), np.median(stack(states, key), axis=0), rtol=1e-6, atol=1e-6
        )


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(3, 9),
    beta=st.sampled_from([0.1, 0.2, 0.34]),
    shapes=shapes_st,
)
def test_trimmed_mean_matches_a_sort_and_slice(tmp_path_factory, seed, n, beta, shapes) -> None:
    k = int(beta * n)
    if 2 * k >= n:
        return
    states = clients_of(seed, n, shapes)
    out, _ = merge(tmp_path_factory.mktemp("t"), "t", states, TrimmedMean(beta=beta))
    for key in out:
        ref = np.sort(stack(states, key), axis=0)[k : n - k].mean(axis=0)
        np.testing.assert_allclose(out[key].numpy(), ref, rtol=1e-5, atol=1e-6)


def reference_krum(states, weights, f: int, m: int):
    flat = [
        np.concatenate([s[k].numpy().ravel() for k in sorted(s)]).astype(np.float64) for s in states
    ]
    n = len(flat)
    dist = np.array([[np.sum((a - b) ** 2) for b in flat] for a in flat])
    closest = max(1, n - f - 2)
    scores = [np.sort(np.delete(dist[i], i))[:closest].sum() for i in range(n)]
    chosen = sorted(np.argsort(scores, kind="stable")[:m].tolist())
    total = sum(weights[i] for i in chosen)
    return chosen, {
        k: sum(states[i][k].double() * weights[i] for i in chosen) / total for k in states[0]
    }


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(5, 9), m=st.integers(1, 3), shapes=shapes_st)
def test_krum_and_multikrum_match_the_pairwise_reference(
    tmp_path_factory, seed, n, m, shapes
) -> None:
    states = clients_of(seed, n, shapes)
    weights = [float(i + 1) for i in range(n)]
    out, result = merge(tmp_path_factory.mktemp("k"), "k", states, Krum(f=1, m=m), weights)
    chosen, ref = reference_krum(states, weights, 1, m)
    assert result.selected == chosen
    for key in out:
        torch.testing.assert_close(out[key].double(), ref[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", [FedAdam(eta=0.1), FedYogi(eta=0.1), FedAdagrad(eta=0.1)])
def test_server_optimizers_match_the_formulas_over_two_rounds(tmp_path: Path, strategy) -> None:
    x = {"t0": torch.randn(4, 3, generator=torch.Generator().manual_seed(0))}
    m = torch.zeros(4, 3, dtype=torch.float64)
    v = torch.zeros(4, 3, dtype=torch.float64)
    state_in = None
    for step in (1, 2):
        states = clients_of(step, 3, [(4, 3)])
        out, result = merge(
            tmp_path, f"r{step}", states, strategy, [1.0, 2.0, 3.0], base=x, state_in=state_in
        )
        avg = sum(s["t0"].double() * w for s, w in zip(states, [1, 2, 3], strict=True)) / 6
        d = avg - x["t0"].double()
        m = 0.9 * m + 0.1 * d
        if strategy.name == "fedadam":
            v = 0.99 * v + 0.01 * d * d
            lr = 0.1 * np.sqrt(1 - 0.99**step) / (1 - 0.9**step)
        elif strategy.name == "fedyogi":
            v = v - 0.01 * d * d * torch.sign(v - d * d)
            lr = 0.1
        else:
            v = v + d * d
            lr = 0.1
        expect = x["t0"].double() + lr * m / (v.sqrt() + 1e-3)
        torch.testing.assert_close(out["t0"].double(), expect, rtol=1e-4, atol=1e-5)
        assert result.state is not None
        saved = load_state(Path(result.state), CAP)
        assert int(saved["step"]) == step
        x, state_in = {"t0": out["t0"]}, result.state


@pytest.mark.parametrize(
    "strategy", [DiLoCo(), FedAvgM(server_lr=0.5), FedAvgM(momentum=0.0, server_lr=1.0)]
)
def test_outer_sgd_matches_prime_diloco_over_three_steps(tmp_path: Path, strategy) -> None:
    """prime's `diloco.py`: param.grad = original - averaged, then torch's SGD(momentum,
    nesterov) steps the original; the merge must give the same model at every step."""
    start = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = torch.nn.Parameter(start.clone())
    outer = torch.optim.SGD(
        [reference], lr=strategy.server_lr, momentum=strategy.momentum, nesterov=strategy.nesterov
    )
    x, state_in = {"t0": start.float()}, None
    for step in (1, 2, 3):
        states = clients_of(10 + step, 3, [(5, 2)])
        out, result = merge(
            tmp_path, f"s{step}", states, strategy, [1.0, 1.0, 2.0], base=x, state_in=state_in
        )
        avg = sum(s["t0"].double() * w for s, w in zip(states, [1, 1, 2], strict=True)) / 4
        with torch.no_grad():
            reference.data.copy_(x["t0"].double())
        reference.grad = reference.detach() - avg
        outer.step()
        torch.testing.assert_close(out["t0"].double(), reference.detach(), rtol=1e-5, atol=1e-6)
        assert result.state is not None
        saved = load_state(Path(result.state), CAP)
        assert int(saved["step"]) == step and not any(k.startswith("v/") for k in saved)
        x, state_in = {"t0": out["t0"]}, result.state


def test_first_round_of_a_server_optimizer_is_the_plain_average(tmp_path: Path) -> None:
    states = clients_of(5, 3, [(6,)])
    out, result = merge(tmp_path, "r0", states, FedAdam())
    avg, _ = merge(tmp_path, "avg", states, FedAvg())
    assert torch.equal(out["t0"], avg["t0"]) and result.state is None


def test_clipping_shrinks_large_updates_toward_the_input_model(tmp_path: Path) -> None:
    base = {"w": torch.zeros(10)}
    small = {"w": torch.full((10,), 0.1)}  # norm ~0.32
    big = {"w": torch.full((10,), 10.0)}  # norm ~31.6
    out, result = merge(tmp_path, "c", [small, big], FedAvg(clip_norm=1.0), base=base)
    expect = (small["w"] + big["w"] * (1.0 / big["w"].norm())) / 2
    torch.testing.assert_close(out["w"], expect)
    assert result.clipped == [1]


def byzantine(tmp: Path, attack: str) -> dict[str, float]:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2000, generator=g)
    honest_updates = [0.02 * torch.randn(2000, generator=g) + 0.1 for _ in range(8)]
    clean = x + torch.stack(honest_updates).mean(0)
    mean_update = torch.stack(honest_updates).mean(0)
    bad = [
        x + (10 * mean_update if attack == "scaled" else -5 * mean_update) + 0.01 * i
        for i in range(2)
    ]
    states = [{"w": x + u} for u in honest_updates] + [{"w": b} for b in bad]
    gap = {}
    for name, strategy in (
        ("fedavg", FedAvg()),
        ("median", FedMedian()),
        ("trimmed", TrimmedMean(beta=0.2)),
        ("krum", Krum(f=2, m=1)),
        ("multikrum", Krum(f=2, m=6)),
    ):
        out, _ = merge(tmp, f"{attack}-{name}", states, strategy)
        gap[name] = float((out["w"] - clean).norm() / mean_update.norm())
    return gap


@pytest.mark.parametrize("attack", ["scaled", "sign_flipped"])
def test_robust_rules_resist_two_byzantine_clients_out_of_ten(tmp_path: Path, attack: str) -> None:
    gap = byzantine(tmp_path, attack)
    assert gap["fedavg"] > 1.0, gap  # pulled off by more than a whole honest update
    for rule in ("median", "trimmed", "krum", "multikrum"):
        assert gap[rule] < 0.35 * gap["fedavg"], (rule, gap)
        assert gap[rule] < 0.5, (rule, gap)


def test_strategy_parameters_are_checked_against_the_shard_count() -> None:
    field, message = Krum(f=1).problem(4) or ("", "")
    assert field == "strategy.f" and "more than 2f+2 = 4" in message
    assert Krum(f=1).problem(5) is None
    assert (Krum(f=1, m=5).problem(5) or ("",))[0] == "strategy.m"
    assert TrimmedMean(beta=0.45).problem(2) is None
    assert FedMedian().problem(1) is None


@given(n=st.integers(1, 20), seed=st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_sorting_networks_sort(n: int, seed: int) -> None:
    rows = list(torch.randn(n, 17, generator=torch.Generator().manual_seed(seed)))
    ref = torch.sort(torch.stack(rows), dim=0).values
    got = order_statistics([r.clone() for r in rows], tuple(range(n)))
    assert all(torch.equal(g, ref[i]) for i, g in enumerate(got))
    mid = ((n - 1) // 2, n // 2)
    assert [
        torch.equal(a, ref[r]) for a, r in zip(order_statistics(rows, mid), mid, strict=True)
    ] == [True, True]
    assert len(batcher(n)) >= n - 1


def test_every_strategy_of_the_contract_has_a_rule() -> None:
    assert set(STRATEGY_NAMES) == set(RULES)

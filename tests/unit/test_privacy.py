"""Central differential privacy's arithmetic: the merge clips each update to the clip norm,
averages uniformly and adds Gaussian noise of standard deviation z * C / n (checked over many
draws), and the privacy spent is exactly what `dp-accounting` says for the same parameters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from dp_accounting import dp_event
from dp_accounting.rdp import rdp_privacy_accountant

from gridx.coordinator.aggregation.engine import aggregate
from gridx.coordinator.aggregation.weights import load_state
from gridx.coordinator.aggregation.work import AggregationJob
from gridx.coordinator.services import privacy
from gridx.schemas.jobs import Privacy
from gridx.schemas.strategies import FedAdam, FedAvg

SIZE = 40_000
NORMS = [10.0, 0.5, 3.0, 2.0]  # update norms: three over the clip norm, one under


def _updates(tmp_path: Path) -> tuple[Path, list[Path], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    base = torch.randn(SIZE, generator=g, dtype=torch.float64).float()
    torch.save({"w": base}, tmp_path / "base.pth")
    paths, updates = [], []
    for i, norm in enumerate(NORMS):
        direction = torch.randn(SIZE, generator=g, dtype=torch.float64)
        update = (direction / direction.norm() * norm).float()
        torch.save({"w": base + update}, tmp_path / f"c{i}.pth")
        paths.append(tmp_path / f"c{i}.pth")
        updates.append((base + update).double() - base.double())
    return tmp_path / "base.pth", paths, updates


def _merge(tmp_path: Path, tag: str, noise_std: float, strategy: object = None) -> torch.Tensor:
    base, paths, _ = _updates(tmp_path)
    out = tmp_path / tag
    out.mkdir()
    job = AggregationJob(
        clients=[(i, str(p), 1.0) for i, p in enumerate(paths)],  # DP: uniform weights
        strategy=strategy or FedAvg(clip_norm=1.0),  # type: ignore[arg-type]
        out_dir=str(out),
        max_bytes=1 << 30,
        base_model=str(base),
        noise_std=noise_std,
    )
    result = aggregate(job)
    return load_state(Path(result.model_pth), 1 << 30)["w"].double()


def test_each_update_is_clipped_to_the_norm_and_averaged_uniformly(tmp_path: Path) -> None:
    base_path, _, updates = _updates(tmp_path)
    merged = _merge(tmp_path, "plain", 0.0)
    clipped = [u * min(1.0, 1.0 / float(u.norm())) for u in updates]
    assert [round(float(c.norm()), 4) for c in clipped] == [1.0, 0.5, 1.0, 1.0]
    base = torch.load(base_path, weights_only=True)["w"].double()
    expected = base + sum(clipped) / len(clipped)
    assert torch.allclose(merged, expected, atol=1e-5)


@pytest.mark.parametrize("z", [0.5, 2.0])
def test_the_noise_has_the_formulas_standard_deviation(tmp_path: Path, z: float) -> None:
    plain = _merge(tmp_path, "plain", 0.0)
    std = privacy.noise_std(Privacy(noise_multiplier=z, clip_norm=1.0), len(NORMS))
    assert std == pytest.approx(z * 1.0 / 4)
    noise = _merge(tmp_path, "noisy", std) - plain
    # 40,000 independent draws: the sample std is within 2 % (about 6 standard errors), the
    # mean within 5 standard errors of 0, and the draws look Gaussian (68 % within one std)
    assert float(noise.std()) == pytest.approx(std, rel=0.02)
    assert abs(float(noise.mean())) < 5 * std / math.sqrt(SIZE)
    assert float((noise.abs() < std).double().mean()) == pytest.approx(0.6827, abs=0.015)
    again = _merge(tmp_path, "again", std) - plain
    assert not torch.allclose(noise, again)  # fresh entropy every merge


def test_a_server_optimizer_gets_the_noise_before_its_step(tmp_path: Path) -> None:
    adam = FedAdam(clip_norm=1.0, eta=1.0, beta1=0.0, beta2=0.0, tau=1e-9)
    quiet = _merge(tmp_path, "quiet", 0.0, adam)
    noisy = _merge(tmp_path, "noisy", 0.5, adam)
    assert not torch.allclose(quiet, noisy)


@pytest.mark.parametrize(
    ("z", "rounds", "delta"), [(0.8, 1, 1e-5), (1.1, 10, 1e-5), (2.0, 50, 1 / 1797), (5.0, 3, 1e-3)]
)
def test_epsilon_is_dp_accountings_rdp_epsilon(z: float, rounds: int, delta: float) -> None:
    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.SelfComposedDpEvent(dp_event.GaussianDpEvent(z), rounds))
    assert privacy.epsilon(z, rounds, delta) == accountant.get_epsilon(delta)


def test_more_rounds_spend_more_and_the_budget_says_when_to_stop() -> None:
    dp = Privacy(noise_multiplier=1.5, clip_norm=1.0, max_epsilon=3.0)
    spent = [privacy.epsilon(1.5, t, 1e-4) for t in range(1, 30)]
    assert spent == sorted(spent) and spent[0] > 0
    fits = [privacy.affordable(dp, t, 1e-4) for t in range(1, 30)]
    last = fits.index(False)
    assert all(fits[:last]) and not any(fits[last:])
    assert spent[last - 1] <= 3.0 < spent[last]
    assert privacy.budget_problem(Privacy(noise_multiplier=0.1, clip_norm=1, max_epsilon=1), 1e-5)


def test_a_private_initialisation_step_sees_the_columns_and_no_rows(tmp_path: Path) -> None:
    from gridx.node.private_training import STAND_IN_ROWS, blind_copy

    table = tmp_path / "visits.csv"
    table.write_text("age,weight,label\n71,80.5,1\n33,61.0,0\n")
    stand_in = blind_copy(table, tmp_path / "blind.csv").read_text().splitlines()
    assert stand_in[0] == "age,weight,label"
    assert stand_in[1:] == ["0,0,0"] * STAND_IN_ROWS  # nothing of a real row
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"text": "a secret"}\n')
    assert blind_copy(lines, tmp_path / "blind.jsonl").read_bytes() == b""

"""Compressed updates: the node's encoder and the coordinator's decoder agree, what a hostile
node sends instead is refused with a reason, and every strategy merges decoded updates as it
merges the models they stand for."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gridx.coordinator.aggregation.compressed import decode_update, is_encoded
from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.weights import load_state, validate_file
from gridx.node import task_wrapper
from gridx.schemas.strategies import (
    DiLoCo,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    Krum,
    Strategy,
    TrimmedMean,
)
from tests.unit.test_strategies import merge
from tests.weightfiles import write_pth

CAP = 50_000_000


def model(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
        "fc.weight": torch.randn(10, 301, generator=g),  # an odd count: int4's last half byte
        "fc.bias": torch.randn(10, generator=g),
        "half": torch.randn(257, generator=g).half(),
        "brain": torch.randn(5, generator=g).bfloat16(),
        "empty": torch.empty(0),
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.tensor([True, False, True]),
    }


def trained(base: dict[str, torch.Tensor], seed: int, step: float = 0.01) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in base.items():
        if v.is_floating_point():
            out[k] = (v.float() + step * torch.randn(v.shape, generator=g)).to(v.dtype)
        else:
            out[k] = v + 1 if v.dtype != torch.bool else ~v
    return out


def encoded(tmp: Path, new: dict, base: dict, spec: str, residual=None) -> tuple[Path, dict]:
    tensors, metadata, left = task_wrapper.encode(new, base, spec, residual)
    path = tmp / f"update-{spec.replace(':', '-')}.safetensors"
    task_wrapper.write_safetensors(str(path), tensors, metadata)
    return path, left


def decoded(tmp: Path, update: Path, base: dict) -> dict[str, torch.Tensor]:
    base_path = write_pth(tmp / "base.pth", base)
    decode_update(str(update), str(base_path), str(tmp / "decoded.st"), CAP)
    validate_file(str(tmp / "decoded.st"), CAP, None)
    return load_state(tmp / "decoded.st", CAP)


def size_of(state: dict[str, torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for v in state.values())


@pytest.mark.parametrize(("spec", "levels"), [("int8", 127), ("int4", 7)])
def test_quantized_updates_decode_within_half_a_step_of_each_block(
    tmp_path: Path, spec: str, levels: int
) -> None:
    base = model()
    new = trained(base, 1)
    path, left = encoded(tmp_path, new, base, spec)
    assert left is None and is_encoded(str(path), CAP)
    got = decoded(tmp_path, path, base)
    assert set(got) == set(base)
    for key, value in base.items():
        assert got[key].dtype == value.dtype and got[key].shape == value.shape, key
        if not value.is_floating_point():
            assert torch.equal(got[key], new[key]), key  # sent as it is
            continue
        delta = (new[key].float() - value.float()).view(-1)
        step = delta.abs().max().item() / levels if delta.numel() else 0.0
        err = (got[key].float() - new[key].float()).abs().max().item() if delta.numel() else 0.0
        rounding = 0.0 if value.dtype == torch.float32 else value.abs().max().item() * 2**-7
        assert err <= step / 2 + rounding + 1e-6, (key, err, step)


def test_the_bytes_sent_shrink_as_promised(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(1000, 1000, generator=g), "b": torch.randn(1000, generator=g)}
    new = trained(base, 2)
    full = size_of(base)
    ratios = {
        spec: encoded(tmp_path, new, base, spec)[0].stat().st_size / full
        for spec in ("int8", "int4", "topk:0.01")
    }
    assert 0.25 < ratios["int8"] <= 0.26
    assert 0.125 < ratios["int4"] <= 0.135
    assert 0.015 < ratios["topk:0.01"] <= 0.021  # 1% of the values, 8 bytes each


def test_topk_sends_the_largest_changes_and_feeds_back_the_rest(tmp_path: Path) -> None:
    base = {"w": torch.zeros(100)}
    new = {"w": torch.arange(100, dtype=torch.float32) / 100}
    path, left = encoded(tmp_path, new, base, "topk:0.1")
    got = decoded(tmp_path, path, base)["w"]
    assert torch.equal(torch.nonzero(got).view(-1), torch.arange(90, 100))
    torch.testing.assert_close(got[90:], new["w"][90:])
    assert torch.equal(left["w"] + got, new["w"])  # nothing lost: sent now or kept
    # the next round adds what was kept: with no change at all, the next ten are sent
    again, left2 = encoded(tmp_path, base, base, "topk:0.1", residual=left)
    got2 = decoded(tmp_path, again, base)["w"]
    assert torch.equal(torch.nonzero(got2).view(-1), torch.arange(80, 90))
    assert float(left2["w"][80:].abs().sum()) == 0.0


def test_a_clipped_and_compressed_update_keeps_to_the_clip_norm(tmp_path: Path) -> None:
    base = {"w": torch.zeros(1000)}
    new = {"w": torch.randn(1000, generator=torch.Generator().manual_seed(3))}
    task_wrapper.clip(new, base, 1.0)
    for spec in ("int8", "int4", "topk:0.5"):
        tensors, metadata, _ = task_wrapper.encode(new, base, spec, None)
        task_wrapper.rescale(tensors, metadata, 1.0)
        path = tmp_path / f"{spec[:4]}.st"
        task_wrapper.write_safetensors(str(path), tensors, metadata)
        norm = float(decoded(tmp_path, path, base)["w"].norm())
        assert 0.5 < norm <= 1.0, (spec, norm)


def hostile(tmp: Path, base: dict, change, metadata: dict | None = None) -> Path:
    """An int8 (or the metadata's) update of `base`, then `change(tensors)` applied."""
    tensors, meta, _ = task_wrapper.encode(trained(base, 1), base, "int8", None)
    meta |= metadata or {}
    change(tensors)
    path = tmp / "hostile.st"
    task_wrapper.write_safetensors(str(path), tensors, meta)
    return path


def _topk(tensors: dict, index: list[int]) -> None:
    for key in [k for k in tensors if k.startswith(("q:", "s:"))]:
        del tensors[key]
    tensors["i:w"] = torch.tensor(index, dtype=torch.int32)
    tensors["v:w"] = torch.ones(len(index))


CASES = {
    "unknown encoding": ({"gridx_update": "int3"}, lambda t: None, "unknown update encoding"),
    "odd block": ({"block": "127"}, lambda t: None, "block size"),
    "huge block": ({"block": str(1 << 30)}, lambda t: None, "block size"),
    "missing entry": ({}, lambda t: t.pop("s:w"), "missing ['s:w']"),
    "extra entry": ({}, lambda t: t.update({"x:evil": torch.zeros(1)}), "unexpected ['x:evil']"),
    "scales too few": ({}, lambda t: t.update({"s:w": torch.ones(1)}), "'s:w'"),
    "scales of another dtype": ({}, lambda t: t.update({"s:w": t["s:w"].double()}), "'s:w'"),
    "values too many": ({}, lambda t: t.update({"q:w": torch.zeros(999, dtype=torch.int8)}), "q:w"),
    "NaN scale": ({}, lambda t: t["s:w"].__setitem__(0, math.nan), "finite and non-negative"),
    "negative scale": ({}, lambda t: t["s:w"].__setitem__(0, -1.0), "finite and non-negative"),
    "integer changed into float": (
        {},
        lambda t: t.update({"r:n": torch.zeros(1)}),
        "'r:n'",
    ),
    "index out of range": ({"gridx_update": "topk"}, lambda t: _topk(t, [3, 300]), "out of range"),
    "negative index": ({"gridx_update": "topk"}, lambda t: _topk(t, [-1, 3]), "out of range"),
    "repeated index": ({"gridx_update": "topk"}, lambda t: _topk(t, [3, 3]), "not increasing"),
    "more indices than values": (
        {"gridx_update": "topk"},
        lambda t: _topk(t, list(range(201))),
        "'i:w'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_update_is_refused_with_its_reason(tmp_path: Path, case: str) -> None:
    base = {"w": torch.randn(200), "n": torch.tensor(3)}
    metadata, change, reason = CASES[case]
    path = hostile(tmp_path, base, change, metadata)
    with pytest.raises(WeightsError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        decoded(tmp_path, path, base)


def test_a_topk_value_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    base = {"w": torch.zeros(10)}
    tensors = {"i:w": torch.tensor([1], dtype=torch.int32), "v:w": torch.tensor([math.inf])}
    path = tmp_path / "inf.st"
    task_wrapper.write_safetensors(str(path), tensors, {"gridx_update": "topk"})
    with pytest.raises(WeightsError, match="NaN or infinite"):
        decoded(tmp_path, path, base)


def test_huge_scales_that_overflow_are_caught_by_the_finiteness_check(tmp_path: Path) -> None:
    base = {"w": torch.zeros(200)}
    path = hostile(tmp_path, base, lambda t: t.update({"s:w": torch.full((2,), 3e38)}))
    with pytest.raises(WeightsError, match="NaN or infinite"):
        decoded(tmp_path, path, base)


def test_a_whole_model_is_not_taken_for_an_update(tmp_path: Path) -> None:
    assert not is_encoded(str(write_pth(tmp_path / "m.pth", model())), CAP)


STRATEGIES: list[Strategy] = [
    FedAvg(),
    FedProx(mu=0.1),
    FedMedian(),
    TrimmedMean(beta=0.2),
    Krum(f=1, m=3),
    FedAvg(clip_norm=0.05),
    FedAdam(),
    FedAvgM(),
    DiLoCo(),
]


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: f"{s.name}-{s.clip_norm}")
def test_every_strategy_merges_int8_updates_as_the_models_they_stand_for(
    tmp_path: Path, strategy: Strategy
) -> None:
    g = torch.Generator().manual_seed(11)
    base = {"w": torch.randn(64, 32, generator=g), "b": torch.randn(32, generator=g)}
    models = [trained(base, seed) for seed in range(6)]
    sent = []
    for i, m in enumerate(models):
        folder = tmp_path / f"n{i}"
        folder.mkdir()
        sent.append(decoded(folder, encoded(folder, m, base, "int8")[0], base))
    plain, _ = merge(tmp_path, "plain", models, strategy, base=base)
    via, _ = merge(tmp_path, "int8", sent, strategy, base=base)
    for key in base:
        moved = float((plain[key] - base[key]).norm())
        assert float((via[key] - plain[key]).norm()) < 0.02 * moved, (strategy.name, key)

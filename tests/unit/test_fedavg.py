from pathlib import Path

import pytest
import torch

from gridx.coordinator.aggregation.fedavg import fedavg_files, weighted_metrics
from gridx.coordinator.aggregation.weights import WeightsError, load_state
from tests.weightfiles import state, write_pth, write_safetensors


def _run(
    tmp_path: Path, clients: list[tuple[str, float]], tag: str = "out"
) -> dict[str, torch.Tensor]:
    pth, st = tmp_path / f"{tag}.pth", tmp_path / f"{tag}.safetensors"
    fedavg_files(clients, str(pth), str(st), 10_000_000)
    a, b = load_state(pth, 10_000_000), load_state(st, 10_000_000)
    for k in a:
        assert torch.equal(a[k], b[k])
    return a


def test_sample_weighted_average_of_mixed_formats(tmp_path: Path) -> None:
    s1, s2 = state(1), state(2)
    clients = [
        (str(write_pth(tmp_path / "1.pth", s1)), 100.0),
        (str(write_safetensors(tmp_path / "2.safetensors", s2)), 300.0),
    ]
    out = _run(tmp_path, clients)
    expect = (s1["fc.weight"].double() * 0.25 + s2["fc.weight"].double() * 0.75).float()
    assert torch.equal(out["fc.weight"], expect)
    assert out["fc.weight"].dtype == torch.float32
    # integer counters: weighted mean, rounded (10*0.25 + 20*0.75 = 17.5 -> 18)
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert int(out["bn.num_batches_tracked"]) == 18


def test_same_inputs_give_bit_identical_output(tmp_path: Path) -> None:
    files = [
        (str(write_pth(tmp_path / f"{i}.pth", state(i, scale=1e3))), float(i + 1)) for i in range(5)
    ]
    a = _run(tmp_path, files, "a")
    b = _run(tmp_path, files, "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def test_mismatched_client_is_refused(tmp_path: Path) -> None:
    other = state(3)
    other["extra"] = torch.zeros(1)
    clients = [
        (str(write_pth(tmp_path / "1.pth", state(1))), 1.0),
        (str(write_pth(tmp_path / "2.pth", other)), 1.0),
    ]
    with pytest.raises(WeightsError, match="differ"):
        _run(tmp_path, clients)
    with pytest.raises(WeightsError, match="no client"):
        _run(tmp_path, [])


def test_weighted_metrics_keep_only_common_keys() -> None:
    out = weighted_metrics([({"loss": 1.0, "acc": 0.5}, 1.0), ({"loss": 3.0}, 3.0)])
    assert out == {"loss": 2.5}
    assert weighted_metrics([]) == {}

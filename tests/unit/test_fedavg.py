"""FedAvg through the aggregation engine: weights, formats, non-float tensors, determinism."""

import hashlib
import random
from pathlib import Path

import pytest
import torch

from gridx.coordinator.aggregation.engine import aggregate
from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.tally import weighted_metrics
from gridx.coordinator.aggregation.weights import load_state
from gridx.coordinator.aggregation.work import AggregationJob
from gridx.schemas.strategies import FedAvg
from tests.weightfiles import state, write_pth, write_safetensors

CAP = 10_000_000


def run(tmp_path: Path, clients: list[tuple[int, str, float]], tag: str = "out", **kw) -> dict:
    out = tmp_path / tag
    out.mkdir()
    result = aggregate(
        AggregationJob(
            clients=clients,
            strategy=kw.pop("strategy", FedAvg()),
            out_dir=str(out),
            max_bytes=CAP,
            **kw,
        )
    )
    a = load_state(Path(result.model_pth), CAP)
    b = load_state(Path(result.model_safetensors), CAP)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    return a


def test_sample_weighted_average_of_mixed_formats(tmp_path: Path) -> None:
    s1, s2 = state(1), state(2)
    clients = [
        (0, str(write_pth(tmp_path / "1.pth", s1)), 100.0),
        (1, str(write_safetensors(tmp_path / "2.safetensors", s2)), 300.0),
    ]
    out = run(tmp_path, clients)
    expect = s1["fc.weight"].double() * 0.25 + s2["fc.weight"].double() * 0.75
    assert torch.allclose(out["fc.weight"].double(), expect, atol=1e-6)
    assert out["fc.weight"].dtype == torch.float32
    # integer counters: weighted mean, rounded (10*0.25 + 20*0.75 = 17.5 -> 18)
    assert out["bn.num_batches_tracked"].dtype == torch.int64
    assert int(out["bn.num_batches_tracked"]) == 18


def test_any_arrival_order_gives_a_bit_identical_model(tmp_path: Path) -> None:
    clients = [
        (
            i,
            str(write_safetensors(tmp_path / f"{i}.safetensors", state(i, scale=1e3))),
            float(i + 1),
        )
        for i in range(6)
    ]
    digests = set()
    for trial in range(4):
        shuffled = clients[:]
        random.Random(trial).shuffle(shuffled)
        out = tmp_path / f"o{trial}"
        out.mkdir()
        result = aggregate(
            AggregationJob(clients=shuffled, strategy=FedAvg(), out_dir=str(out), max_bytes=CAP)
        )
        digests.add(hashlib.sha256(Path(result.model_safetensors).read_bytes()).hexdigest())
    assert len(digests) == 1


def test_half_precision_is_accumulated_in_float32(tmp_path: Path) -> None:
    a = {"w": torch.full((1000,), 1.0, dtype=torch.float16)}
    b = {"w": torch.full((1000,), 1.0 + 2**-10, dtype=torch.float16)}
    clients = [
        (0, str(write_safetensors(tmp_path / "a.st", a)), 1.0),
        (1, str(write_safetensors(tmp_path / "b.st", b)), 1.0),
    ]
    out = run(tmp_path, clients)
    assert out["w"].dtype == torch.float16
    assert torch.equal(out["w"], torch.full((1000,), 1.0 + 2**-11, dtype=torch.float32).half())


def test_mismatched_client_is_refused(tmp_path: Path) -> None:
    other = state(3)
    other["extra"] = torch.zeros(1)
    clients = [
        (0, str(write_pth(tmp_path / "1.pth", state(1))), 1.0),
        (1, str(write_pth(tmp_path / "2.pth", other)), 1.0),
    ]
    with pytest.raises(WeightsError, match="differ"):
        run(tmp_path, clients)
    with pytest.raises(WeightsError, match="no client"):
        run(tmp_path, [], tag="empty")


def test_weighted_metrics_keep_only_common_keys() -> None:
    out = weighted_metrics([({"loss": 1.0, "acc": 0.5}, 1.0), ({"loss": 3.0}, 3.0)])
    assert out == {"loss": 2.5}
    assert weighted_metrics([]) == {}


def test_counts_are_summed_and_everything_else_is_row_weighted() -> None:
    out = weighted_metrics(
        [({"accuracy": 0.5, "samples": 100.0}, 100.0), ({"accuracy": 0.8, "samples": 200.0}, 200.0)]
    )
    assert out == {"accuracy": pytest.approx(0.7), "samples": 300.0}


def test_a_round_writes_its_pth_only_and_the_last_round_both_files_with_crc(
    tmp_path: Path,
) -> None:
    import zipfile

    clients = [(i, str(write_pth(tmp_path / f"{i}.pth", state(i))), 1.0) for i in range(2)]
    expected = run(tmp_path, clients, "final")  # the last round: both formats, equal
    assert torch.serialization.get_crc32_options()  # the process-wide option is left alone
    final = tmp_path / "final" / "model.pth"
    with zipfile.ZipFile(final) as zf:
        assert zf.testzip() is None  # the user's download: every CRC32 record checks
    out = tmp_path / "round"
    out.mkdir()
    result = aggregate(
        AggregationJob(
            clients=clients, strategy=FedAvg(), out_dir=str(out), max_bytes=CAP, final=False
        )
    )
    assert result.model_safetensors is None and sorted(p.name for p in out.iterdir()) == [
        "model.pth"
    ]
    got = torch.load(result.model_pth, weights_only=True)  # what the next round's tasks load
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert torch.serialization.get_crc32_options()

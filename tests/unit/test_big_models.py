"""Models larger than memory should be: the `.pth` writer streams tensor by tensor and writes
what `torch.load` and zip tools read, and a whole merge (upload check, starting model, FedAvg)
of a 240 MB model grows the merging process by far less than the model."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from gridx.coordinator.aggregation.pthfile import PthWriter

MODEL = {f"layer{i:02d}.weight": (torch.float32, (1000, 3000)) for i in range(20)}  # 240 MB


@pytest.mark.parametrize("crc32", [True, False])
def test_a_streamed_pth_is_what_torch_save_writes(tmp_path: Path, crc32: bool) -> None:
    g = torch.Generator().manual_seed(0)
    state = {
        "w": torch.randn(300, 7, generator=g),
        "half": torch.randn(9, generator=g).half(),
        "brain": torch.randn(5, generator=g).bfloat16(),
        "steps": torch.tensor(5),
        "mask": torch.tensor([True, False]),
        "empty": torch.empty(0),
    }
    writer = PthWriter(
        tmp_path / "m.pth", {k: (v.dtype, tuple(v.shape)) for k, v in state.items()}, crc32
    )
    for key in sorted(state):
        writer.write(key, state[key])
    writer.close()
    for mmap in (False, True):
        got = torch.load(tmp_path / "m.pth", weights_only=True, mmap=mmap)
        assert list(got) == sorted(state)
        assert all(torch.equal(got[k], state[k]) and got[k].dtype == state[k].dtype for k in state)
    if crc32:
        with zipfile.ZipFile(tmp_path / "m.pth") as zf:
            assert zf.testzip() is None  # every record's CRC-32 checks


def test_the_writer_refuses_what_does_not_follow_its_specs(tmp_path: Path) -> None:
    writer = PthWriter(tmp_path / "m.pth", {"a": (torch.float32, (2,)), "b": (torch.int64, ())})
    with pytest.raises(ValueError, match="expected a"):
        writer.write("b", torch.tensor(1))
    with pytest.raises(ValueError, match="expected a"):
        writer.write("a", torch.zeros(3))
    writer.write("a", torch.zeros(2))
    with pytest.raises(ValueError, match="only 1 of 2"):
        writer.close()


MEASURE = """
import json, resource, sys
import torch
from gridx.coordinator.aggregation import engine, weights
from gridx.coordinator.aggregation.work import AggregationJob
from gridx.schemas.strategies import FedAvg

def merge(work, tag):
    weights.validate_file(f"{work}/{tag}0.pth", 1 << 40, None)
    weights.initial_model(f"{work}/{tag}1.pth", f"{work}/{tag}start.pth", 1 << 40)
    engine.aggregate(AggregationJob(
        clients=[(0, f"{work}/{tag}0.pth", 1.0), (1, f"{work}/{tag}1.pth", 3.0)],
        strategy=FedAvg(), out_dir=f"{work}/{tag}", max_bytes=1 << 40,
        base_model=f"{work}/{tag}start.pth",
    ))

merge(sys.argv[1], "small")  # everything imported, every buffer made once
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
merge(sys.argv[1], "big")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mb": (after - before) / 1024}))
"""


def test_a_merge_of_a_big_model_holds_a_tensor_not_the_model(tmp_path: Path) -> None:
    for tag, rows in (("small", 10), ("big", 1000)):
        (tmp_path / tag).mkdir()
        for i in range(2):
            state = {
                k: torch.full((rows, shape[1]), float(i + 1)) for k, (_, shape) in MODEL.items()
            }
            torch.save(state, tmp_path / f"{tag}{i}.pth")
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    grew = json.loads(out.stdout)["grew_mb"]
    print(f"a 240 MB model's check, conversion and merge grew the process by {grew:.0f} MB")
    assert grew < 80, f"the merge of a 240 MB model grew the process by {grew:.0f} MB"
    merged = torch.load(tmp_path / "big" / "model.pth", weights_only=True, mmap=True)
    assert set(merged) == set(MODEL)
    assert torch.equal(merged["layer07.weight"], torch.full((1000, 3000), 1.75))  # (1 + 3*2) / 4
    with zipfile.ZipFile(tmp_path / "big" / "model.pth") as final:
        assert final.testzip() is None

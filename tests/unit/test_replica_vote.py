"""Comparing the copies of a shard's update: distances and the majority that wins."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gridx.coordinator.aggregation.replicas import distance, distances
from gridx.coordinator.aggregation.tally import majority

MAX = 1 << 20


def _save(path: Path, w: torch.Tensor, step: int = 3) -> str:
    torch.save({"w": w, "step": torch.tensor(step)}, path)
    return str(path)


def test_honest_copies_agree_and_a_cheat_is_far(tmp_path: Path) -> None:
    w = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    a = _save(tmp_path / "a.pth", w)
    b = _save(tmp_path / "b.pth", w.clone())
    near = _save(tmp_path / "near.pth", w * (1 + 1e-6))
    cheat = _save(tmp_path / "cheat.pth", torch.full_like(w, 100.0))
    counted = _save(tmp_path / "counted.pth", w, step=4)  # an integer tensor differs
    assert distance(a, b, MAX) == 0.0
    assert 0 < distance(a, near, MAX) < 1e-5
    assert distance(a, cheat, MAX) > 0.9
    assert distance(a, counted, MAX) == math.inf
    d = distances([a, cheat, b], MAX)
    assert d[0][2] == 0.0 and d[0][1] == d[1][0] > 0.9
    assert majority(d, 1e-3, 2) == [0, 2]  # the two honest copies
    assert majority(distances([a, cheat], MAX), 1e-3, 2) is None  # a tie needs a third copy


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=7),
    st.integers(1, 4),
)
def test_majority_is_the_largest_agreeing_group(labels: list[int], quorum: int) -> None:
    # copies with the same label are identical, different labels far apart
    dist = [[0.0 if x == y else 1.0 for y in labels] for x in labels]
    got = majority(dist, 1e-3, quorum)
    biggest = max(labels.count(v) for v in set(labels))
    if biggest < quorum:
        assert got is None
    else:
        assert got is not None and len(got) == biggest
        assert len({labels[i] for i in got}) == 1
        first = min(i for i in range(len(labels)) if labels.count(labels[i]) == biggest)
        assert got[0] == first  # ties go to the earliest copy

"""Placing a job on node-local data: the column order it fixes (which nodes meet its placement:
tests/unit/test_placement.py)."""

from __future__ import annotations

from gridx.coordinator.services.local_data import common_columns


def test_the_most_common_column_set_then_its_most_common_order() -> None:
    a, b, other = ["x", "y", "label"], ["label", "x", "y"], ["x", "z", "label"]
    assert common_columns([b, a, a, other]) == a
    assert common_columns([b, a, other, other, other]) == other
    assert common_columns([b, a]) == b  # a tie: the first node's order

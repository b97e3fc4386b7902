"""Placing a job on node-local data: the column order it fixes, and which nodes' machines meet
its placement (the same rules the claim's SQL applies)."""

from __future__ import annotations

from gridx.coordinator.services.local_data import allows, common_columns
from gridx.schemas.agent import Capabilities
from gridx.schemas.jobs import JobConfig


def test_the_most_common_column_set_then_its_most_common_order() -> None:
    a, b, other = ["x", "y", "label"], ["label", "x", "y"], ["x", "z", "label"]
    assert common_columns([b, a, a, other]) == a
    assert common_columns([b, a, other, other, other]) == other
    assert common_columns([b, a]) == b  # a tie: the first node's order


def test_placement_on_capabilities() -> None:
    caps = Capabilities(cpus=4, memory_mb=8000, sandbox="strong", arch="aarch64")
    assert allows(JobConfig(min_cpus=4, min_sandbox="strong", arch="aarch64"), caps)
    assert not allows(JobConfig(require_docker=True), caps)
    assert not allows(JobConfig(require_gpu=True), caps)
    assert not allows(JobConfig(min_memory_mb=9000), caps)
    assert not allows(JobConfig(arch="x86_64"), caps)
    assert not allows(JobConfig(min_sandbox="strong"), Capabilities(sandbox="weak"))

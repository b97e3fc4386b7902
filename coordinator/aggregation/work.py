"""What the coordinator hands its process pool: the pool's entry points and their arguments.

This module imports no torch. Each entry point imports its implementation when it first runs,
which is in a pool worker, so the coordinator process itself (its API, its services) starts and
serves without loading torch; only the workers pay for it. Errors come back as `WeightsError`
(from the torch-free `errors` module), so unpickling one loads nothing either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridx.schemas.strategies import Strategy


@dataclass
class AggregationJob:
    """Everything one aggregation needs (picklable, for the process pool)."""

    clients: list[tuple[int, str, float]]
    """(shard, file, sample weight) per client; any order."""
    strategy: Strategy
    out_dir: str
    max_bytes: int
    base_model: str | None = None
    """The round's input model (None in round 0)."""
    state_in: str | None = None
    """The server optimizer's state from the previous round, if any."""
    final: bool = True
    """The job's last round: its model is the user's download, so it is also written as
    safetensors, and its `.pth` keeps the zip's CRC32 records (any zip tool can check it). Every
    other round writes only the `.pth` the next round's tasks load, without them."""
    noise_std: float = 0.0
    """Central differential privacy: Gaussian noise of this standard deviation is added to
    every coordinate of the merged update (0: none)."""
    origins: list[tuple[str, float]] | None = None
    """Asynchronous steps: per client (in `clients`' order) the model it trained from and its
    staleness discount; the client counts as `base_model + discount * (client - origin)`
    (`aggregation.staleness`). None: every client trained from `base_model`."""


@dataclass
class AggregationResult:
    """Where the outputs went and what the rule decided."""

    signature: str
    model_safetensors: str | None
    model_pth: str
    state: str | None = None
    selected: list[int] = field(default_factory=list)
    """Shards Krum kept (empty for other rules)."""
    clipped: list[int] = field(default_factory=list)
    """Shards whose update was clipped."""
    merge_s: float = 0.0
    """Seconds to read the clients and merge them (the model then sits in memory)."""
    write_s: float = 0.0
    """Seconds more to finish writing the model files."""


def warm_up() -> int:
    """Import what the entry points need (torch among it) now, in this worker, so that the
    first upload or merge does not pay for it. Returns the worker's pid."""
    import os

    from gridx.coordinator.aggregation import engine, pthfile, replicas, weights  # noqa: F401

    pthfile.warm_up()
    return os.getpid()


def aggregate(job: AggregationJob) -> AggregationResult:
    """Merge one round (`engine.aggregate`)."""
    from gridx.coordinator.aggregation import engine

    return engine.aggregate(job)


def validate_file(
    path: str,
    max_bytes: int,
    expected_signature: str | None,
    base: str | None = None,
    max_norm: float | None = None,
    frozen: bool = False,
) -> str:
    """Check an uploaded weight file; its signature (`weights.validate_file`)."""
    from gridx.coordinator.aggregation import weights

    return weights.validate_file(path, max_bytes, expected_signature, base, max_norm, frozen)


def is_encoded(path: str, max_bytes: int) -> bool:
    """Whether a result file is a compressed update (`compressed.is_encoded`)."""
    from gridx.coordinator.aggregation import compressed

    return compressed.is_encoded(path, max_bytes)


def decode_update(path: str, base: str, out: str, max_bytes: int) -> int:
    """Decode a compressed update onto its model (`compressed.decode_update`)."""
    from gridx.coordinator.aggregation import compressed

    return compressed.decode_update(path, base, out, max_bytes)


def initial_model(path: str, out: str, max_bytes: int) -> str:
    """Check a user's initial model and store it as safetensors (`weights.initial_model`)."""
    from gridx.coordinator.aggregation import weights

    return weights.initial_model(path, out, max_bytes)


def distances(paths: list[str], max_bytes: int) -> list[list[float]]:
    """How far apart the copies of one shard are (`replicas.distances`)."""
    from gridx.coordinator.aggregation import replicas

    return replicas.distances(paths, max_bytes)

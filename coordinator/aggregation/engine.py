"""One aggregation, start to finish: the process pool's entry point.

`aggregate()` opens the round's client files (sorted by shard, stably: an async step's several
updates of one shard keep the order given), rebases an async step's updates onto its input
model with their staleness discount, optionally clips the updates, applies the job's strategy
tensor by tensor, and writes each merged tensor at once to a torch `.pth` state_dict (what
train.py scripts load) and, for the job's last round, to safetensors too. Server optimizers
also write their state file. Memory stays about one tensor per client whatever the model's size
and N (each file's pages are dropped once a tensor is merged).
Differentially private jobs add Gaussian noise to the merged update (to the mean before a server
optimizer's step), from a generator seeded by the OS's entropy.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch

from gridx.coordinator.aggregation import fedopt
from gridx.coordinator.aggregation.clients import ClientSet, accumulation_dtype
from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.fedavg import weighted_mean
from gridx.coordinator.aggregation.pthfile import PthWriter
from gridx.coordinator.aggregation.rules import RULES
from gridx.coordinator.aggregation.tensorfile import (
    SafetensorsWriter,
    Spec,
    TensorFile,
    signature_of,
)
from gridx.coordinator.aggregation.work import AggregationJob, AggregationResult
from gridx.schemas.strategies import FedAdam, FedAvgM


def aggregate(job: AggregationJob) -> AggregationResult:
    """Run one aggregation (see the module docstring).

    Raises:
        WeightsError: a client file is unusable or does not match the others.
    """
    order = sorted(range(len(job.clients)), key=lambda i: job.clients[i][0])  # stable
    ordered = [job.clients[i] for i in order]
    shards = [s for s, _, _ in ordered]
    strategy = job.strategy
    cs = ClientSet.open(
        [p for _, p, _ in ordered],
        [w for _, _, w in ordered],
        job.max_bytes,
        job.base_model,
        [job.origins[i] for i in order] if job.origins is not None else None,
    )
    out = Path(job.out_dir)
    result = AggregationResult(
        signature=signature_of(cs.specs),
        model_safetensors=str(out / "model.safetensors") if job.final else None,
        model_pth=str(out / "model.pth"),
    )
    started = time.perf_counter()
    sink = ModelSink(result.model_safetensors, result.model_pth, cs.specs, crc32=job.final)
    noise = Noise(job.noise_std)
    try:
        if strategy.clip_norm is not None:
            result.clipped = [shards[i] for i in cs.clip(strategy.clip_norm)]
        if isinstance(strategy, FedAdam | FedAvgM) and cs.base is not None:  # and their kin
            result.state = str(out / "state.safetensors")
            _server_optimizer(cs, strategy, job.state_in, sink, result.state, noise)
        else:
            rule = RULES[strategy.name]
            chosen = rule.select(cs, strategy) if rule.select is not None else None
            if chosen is not None:
                result.selected = sorted(shards[i] for i in chosen)
            for key in cs.names():
                merged_key = rule.merge(cs, key, strategy, chosen, sink.buffer(key))
                sink.put(key, noise.add(merged_key) if cs.is_float(key) else merged_key)
                cs.release()
        merged = time.perf_counter()
        sink.finish()
        result.merge_s, result.write_s = merged - started, time.perf_counter() - merged
    finally:
        cs.close()
    return result


class Noise:
    """Gaussian noise of a fixed standard deviation, added in place to merged tensors."""

    def __init__(self, std: float) -> None:
        self.std = std
        self.generator = torch.Generator()
        self.generator.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)

    def add(self, value: torch.Tensor) -> torch.Tensor:
        """`value` plus noise (itself, changed in place; untouched when the std is 0)."""
        if self.std > 0:
            draw = torch.randn(value.shape, generator=self.generator, dtype=torch.float64)
            value.add_((draw * self.std).to(value.dtype))
        return value


class ModelSink:
    """Writes the merged tensors as they come (in sorted key order): the `.pth` state_dict
    (`PthWriter`) and, when given a path, safetensors, each tensor once merged, so a model of
    any size is written with memory for about one tensor.

    float32 results are merged into one scratch buffer kept by this process across aggregations
    (a pool worker reuses it every round of a job), as long as the model's largest float32
    tensor, so the merge writes to memory that is already mapped.
    """

    _scratch = torch.empty(0)

    def __init__(
        self, path: str | None, pth_path: str, specs: dict[str, Spec], crc32: bool
    ) -> None:
        self.specs = specs
        largest = max(
            (math.prod(shape) for dtype, shape in specs.values() if dtype == torch.float32),
            default=0,
        )
        if ModelSink._scratch.numel() < largest:
            ModelSink._scratch = torch.empty(largest, dtype=torch.float32)
        self.pth = PthWriter(pth_path, specs, crc32)
        self.safetensors = SafetensorsWriter(path, specs) if path is not None else None

    def buffer(self, key: str) -> torch.Tensor | None:
        """Memory for `key`'s float32 result, or None (the rule allocates); valid until the
        next `put`."""
        dtype, shape = self.specs[key]
        if dtype != torch.float32:
            return None
        return ModelSink._scratch[: math.prod(shape)].view(shape)

    def put(self, key: str, value: torch.Tensor) -> None:
        """Write a merged tensor (keys in sorted order)."""
        self.pth.write(key, value)
        if self.safetensors is not None:
            self.safetensors.write(key, value)

    def finish(self) -> None:
        """Finish the files. Without CRC-32 (every round but a job's last) the `.pth` has no
        CRC32 records (torch.load does not need them, and every blob is checked end to end by
        its SHA-256)."""
        self.pth.close()
        if self.safetensors is not None:
            self.safetensors.close()


def _server_optimizer(
    cs: ClientSet,
    s: FedAdam | FedAvgM,
    state_in: str | None,
    writer: ModelSink,
    state_out: str,
    noise: Noise,
) -> None:
    """Step the model from the clients' mean; state: the first moment or momentum buffer `m/*`,
    the adaptive rules' second moment `v/*`, and the step count."""
    assert cs.base is not None
    adaptive = isinstance(s, FedAdam)
    state_specs: dict[str, Spec] = {"step": (torch.int64, ())}
    for key in cs.names():
        if cs.is_float(key):
            dtype, shape = cs.specs[key]
            state_specs[f"m/{key}"] = (accumulation_dtype(dtype), shape)
            if adaptive:
                state_specs[f"v/{key}"] = state_specs[f"m/{key}"]
    prev = TensorFile(state_in, 1 << 62) if state_in else None
    if prev is not None and prev.signature != signature_of(state_specs):
        prev.close()
        raise WeightsError("the optimizer state does not match the model")
    step = int(prev.get("step")) + 1 if prev is not None else 1
    # The state file's keys sort as m/* < step < v/*: m is streamed out as it is made, v waits.
    state = SafetensorsWriter(state_out, state_specs)
    second_moments: dict[str, torch.Tensor] = {}
    try:
        for key in cs.names():
            avg = weighted_mean(cs, key)
            if not cs.is_float(key):
                writer.put(key, avg)
                continue
            dtype = cs.specs[key][0]
            acc = accumulation_dtype(dtype)
            x = cs.base.get(key).to(acc)
            m = prev.get(f"m/{key}").clone() if prev else torch.zeros_like(x)
            if isinstance(s, FedAdam):
                v = prev.get(f"v/{key}").clone() if prev else torch.zeros_like(x)
                new_x, m, second_moments[key] = fedopt.fedopt_step(
                    s.name, x, noise.add(avg.to(acc)), m, v, step, s.eta, s.beta1, s.beta2, s.tau
                )
            else:
                new_x, m = fedopt.sgdm_step(
                    x, noise.add(avg.to(acc)), m, s.server_lr, s.momentum, s.nesterov
                )
            writer.put(key, new_x.to(dtype))
            state.write(f"m/{key}", m)
            cs.release()
    finally:
        if prev is not None:
            prev.close()
    state.write("step", torch.tensor(step, dtype=torch.int64))
    for key in sorted(second_moments):
        state.write(f"v/{key}", second_moments.pop(key))
    state.close()

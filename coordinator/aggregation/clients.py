"""The clients of one aggregation: open files in shard order, weights, optional update clipping."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gridx.coordinator.aggregation.tensorfile import Spec, TensorFile, WeightsError


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float (f32, f16, bf16) is summed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass
class ClientSet:
    """N client files with the same keys, shapes and dtypes, in a fixed (shard) order.

    With clipping, client i's float tensors are seen as `base + scale_i * (client_i - base)`, i.e.
    their update (against the round's input model `base`) shrunk to at most the clip norm.
    """

    files: list[TensorFile]
    weights: list[float]
    specs: dict[str, Spec]
    base: TensorFile | None = None
    scales: list[float] | None = None

    @classmethod
    def open(
        cls, paths: list[str], weights: list[float], max_bytes: int, base: str | None = None
    ) -> ClientSet:
        """Open every file and check they agree (and agree with `base`, if given).

        Raises:
            WeightsError: a file is unusable or differs in keys, shapes or dtypes.
        """
        if not paths:
            raise WeightsError("no client updates to aggregate")
        if sum(weights) <= 0 or any(w < 0 for w in weights):
            raise WeightsError("sample weights must be non-negative and add up to more than zero")
        files: list[TensorFile] = []
        try:
            for path in paths:
                files.append(TensorFile(path, max_bytes))
                if files[-1].signature != files[0].signature:
                    raise WeightsError(f"{path}: keys, shapes or dtypes differ from the others")
            base_file = TensorFile(base, max_bytes) if base else None
            if base_file is not None and base_file.signature != files[0].signature:
                raise WeightsError("the round's input model differs from the updates")
        except BaseException:
            for f in files:
                f.close()
            raise
        return cls(files=files, weights=list(weights), specs=dict(files[0].specs), base=base_file)

    def close(self) -> None:
        """Unmap everything."""
        for f in self.files:
            f.close()
        if self.base is not None:
            self.base.close()

    @property
    def n(self) -> int:
        """Number of clients."""
        return len(self.files)

    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self.specs)

    def is_float(self, key: str) -> bool:
        """True for floating-point tensors (the ones rules apply to)."""
        return self.specs[key][0].is_floating_point

    def clip(self, max_norm: float) -> list[int]:
        """Set clipping scales from each update's L2 norm (one streamed pass over every file).

        Returns:
            The indices of the clients whose update was shrunk.
        """
        if self.base is None:
            return []
        sums = [0.0] * self.n
        for key in self.names():
            if not self.is_float(key):
                continue
            x = self.base.get(key)
            for i, f in enumerate(self.files):
                diff = f.get(key).to(torch.float64) - x
                sums[i] += float(torch.dot(diff.view(-1), diff.view(-1)))
                f.release(key)
            self.base.release(key)
        norms = [math.sqrt(s) for s in sums]
        self.scales = [min(1.0, max_norm / nrm) if nrm > 0 else 1.0 for nrm in norms]
        return [i for i, s in enumerate(self.scales) if s < 1.0]

    def tensor(self, i: int, key: str) -> torch.Tensor:
        """Client i's tensor (clipped if clipping is on): a read-only view when unclipped."""
        value = self.files[i].get(key)
        if self.scales is None or self.scales[i] >= 1.0 or not self.is_float(key):
            return value
        assert self.base is not None
        return torch.lerp(self.base.get(key), value, self.scales[i])

    def block(self, key: str, lo: int, hi: int, dtype: torch.dtype) -> torch.Tensor:
        """Elements [lo, hi) of `key` from every client: a fresh (N, hi - lo) tensor of `dtype`."""
        out = torch.empty(self.n, hi - lo, dtype=dtype)
        base = self.base.get(key).view(-1)[lo:hi] if self.scales is not None and self.base else None
        for i, f in enumerate(self.files):
            out[i].copy_(f.get(key).view(-1)[lo:hi])
            if base is not None and self.scales is not None and self.scales[i] < 1.0:
                torch.lerp(base.to(dtype), out[i], self.scales[i], out=out[i])
            f.release(key, lo, hi - lo)
        return out

    def release(self) -> None:
        """Drop every mapped page of every file (called after each tensor is merged)."""
        for f in self.files:
            f.release_all()
        if self.base is not None:
            self.base.release_all()

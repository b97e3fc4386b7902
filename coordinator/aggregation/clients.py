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

    With origins (an async step's updates, each trained from an older model o_i with a
    staleness discount d_i), client i's float tensors are seen as `base + d_i * (client_i - o_i)`:
    its update moved onto the step's input model. With clipping, client i's float tensors are
    then seen as `base + scale_i * (client_i - base)`, i.e. their update (against the round's
    input model `base`) shrunk to at most the clip norm.
    """

    files: list[TensorFile]
    weights: list[float]
    specs: dict[str, Spec]
    base: TensorFile | None = None
    scales: list[float] | None = None
    origins: list[tuple[TensorFile, float] | None] | None = None
    """Per client: the model it trained from and its discount (None: it trained from `base`
    and counts in full)."""

    @classmethod
    def open(
        cls,
        paths: list[str],
        weights: list[float],
        max_bytes: int,
        base: str | None = None,
        origins: list[tuple[str, float]] | None = None,
    ) -> ClientSet:
        """Open every file and check they agree (and agree with `base`, if given).

        Args:
            origins: per client, the model it trained from and its staleness discount (needs
                `base`); each file is opened once however many clients share it.

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
            if base_file is not None:
                files.append(base_file)  # closed with the rest if what follows fails
                if base_file.signature != files[0].signature:
                    raise WeightsError("the round's input model differs from the updates")
            rebased = _rebasings(origins, base, base_file, files, max_bytes)
        except BaseException:
            for f in files:
                f.close()
            raise
        clients = files[: len(paths)]
        return cls(
            files=clients,
            weights=list(weights),
            specs=dict(clients[0].specs),
            base=base_file,
            origins=rebased,
        )

    def close(self) -> None:
        """Unmap everything."""
        for f in self._all():
            f.close()

    def _all(self) -> list[TensorFile]:
        """Every open file, once: clients, base and origins."""
        seen = {id(f): f for f in self.files}
        if self.base is not None:
            seen[id(self.base)] = self.base
        for origin in self.origins or []:
            if origin is not None:
                seen[id(origin[0])] = origin[0]
        return list(seen.values())

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
                diff = self._rebased(i, key).to(torch.float64) - x
                sums[i] += float(torch.dot(diff.view(-1), diff.view(-1)))
                f.release(key)
            self.release()
        norms = [math.sqrt(s) for s in sums]
        self.scales = [min(1.0, max_norm / nrm) if nrm > 0 else 1.0 for nrm in norms]
        return [i for i, s in enumerate(self.scales) if s < 1.0]

    def _rebased(self, i: int, key: str) -> torch.Tensor:
        """Client i's tensor moved onto the base model (`base + d_i * (client_i - o_i)`) when it
        trained from another, else its file's read-only view."""
        value = self.files[i].get(key)
        origin = self.origins[i] if self.origins is not None else None
        if origin is None or not self.is_float(key):
            return value
        assert self.base is not None
        acc = accumulation_dtype(value.dtype)
        moved = value.to(acc) - origin[0].get(key).to(acc)
        return moved.mul_(origin[1]).add_(self.base.get(key).to(acc))

    def tensor(self, i: int, key: str) -> torch.Tensor:
        """Client i's tensor (rebased, clipped if clipping is on): a read-only view when
        neither applies."""
        value = self._rebased(i, key)
        if self.scales is None or self.scales[i] >= 1.0 or not self.is_float(key):
            return value
        assert self.base is not None
        return torch.lerp(self.base.get(key).to(value.dtype), value, self.scales[i])

    def block(self, key: str, lo: int, hi: int, dtype: torch.dtype) -> torch.Tensor:
        """Elements [lo, hi) of `key` from every client: a fresh (N, hi - lo) tensor of `dtype`."""
        out = torch.empty(self.n, hi - lo, dtype=dtype)
        base = self.base.get(key).view(-1)[lo:hi] if self.base is not None else None
        for i, f in enumerate(self.files):
            out[i].copy_(f.get(key).view(-1)[lo:hi])
            origin = self.origins[i] if self.origins is not None else None
            if origin is not None and base is not None and self.is_float(key):
                out[i].sub_(origin[0].get(key).view(-1)[lo:hi].to(dtype))
                out[i].mul_(origin[1]).add_(base.to(dtype))
                origin[0].release(key, lo, hi - lo)
            if base is not None and self.scales is not None and self.scales[i] < 1.0:
                torch.lerp(base.to(dtype), out[i], self.scales[i], out=out[i])
            f.release(key, lo, hi - lo)
        return out

    def release(self) -> None:
        """Drop every mapped page of every file (called after each tensor is merged)."""
        for f in self._all():
            f.release_all()


def _rebasings(
    origins: list[tuple[str, float]] | None,
    base: str | None,
    base_file: TensorFile | None,
    opened: list[TensorFile],
    max_bytes: int,
) -> list[tuple[TensorFile, float] | None] | None:
    """Open the models async updates trained from (each once; appended to `opened` so the
    caller closes them on failure); None per client that trained from `base` in full."""
    if origins is None:
        return None
    if base_file is None:
        raise WeightsError("an async step needs its input model to move updates onto")
    by_path: dict[str, TensorFile] = {}
    found: list[tuple[TensorFile, float] | None] = []
    for path, discount in origins:
        if path == base and discount == 1.0:
            found.append(None)
            continue
        if path not in by_path:
            by_path[path] = TensorFile(path, max_bytes)
            opened.append(by_path[path])
            if by_path[path].signature != base_file.signature:
                raise WeightsError(f"{path}: the model an update trained from differs")
        found.append((by_path[path], discount))
    return found

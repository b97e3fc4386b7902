"""Zero-copy, one-tensor-at-a-time access to weight files, and a streaming safetensors writer.

A client's safetensors file is memory-mapped and each tensor is a view into the mapping, so the
merge reads page-cache pages directly (no copy); once a range has been used it is dropped from the
process with `madvise(MADV_DONTNEED)`, which keeps resident memory at about one tensor per open
file however large the file. The header is parsed and checked by this module before any byte of
data is touched. A `.pth` zip goes through `torch.load(weights_only=True, mmap=True)` only, after
its zip directory was checked against the size cap.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import json
import mmap
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import torch

from gridx.coordinator.aggregation.errors import WeightsError

MAX_HEADER = 100 << 20
MAX_ZIP_ENTRIES = 100_000
# The kernel maps up to 64 KiB around a faulting page ("fault-around"), so a released range is
# widened to 64 KiB boundaries, or those neighbour pages would stay resident.
FAULT_AROUND = 64 * 1024

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}

Spec = tuple[torch.dtype, tuple[int, ...]]


def signature_of(specs: dict[str, Spec]) -> str:
    """A hash of every key's dtype and shape: files with equal signatures can be merged."""
    spec = sorted((k, str(d), list(s)) for k, (d, s) in specs.items())
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


_LIBC = ctypes.CDLL(None, use_errno=True)
_PAGE = mmap.PAGESIZE


def _drop_inside(address: int, length: int) -> None:
    """Drop the whole pages inside [address, address + length) of a private file mapping that
    was only read (they are read again from the file if touched); never a byte outside it."""
    lo = address + (-address % _PAGE)
    hi = (address + length) - (address + length) % _PAGE
    if hi > lo:
        _LIBC.madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), mmap.MADV_DONTNEED)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class TensorFile:
    """The tensors of one weight file (safetensors or `.pth`), checked, read lazily.

    Raises:
        WeightsError: too large, malformed, hostile, or not a flat dict of dense tensors.
    """

    def __init__(self, path: str | Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.size = self.path.stat().st_size
        if self.size > max_bytes:
            raise WeightsError(f"weights file is {self.size} bytes, over the cap of {max_bytes}")
        if self.size < 8:
            raise WeightsError("weights file is empty or truncated")
        self._mm: mmap.mmap | None = None
        self._state: dict[str, torch.Tensor] | None = None
        self._offsets: dict[str, tuple[int, int]] = {}
        self.metadata: dict[str, str] = {}
        """A safetensors file's `__metadata__` (string to string, as the format says)."""
        with self.path.open("rb") as fh:
            head = fh.read(8)
        if head[:4] == b"PK\x03\x04":
            self.format = "pth"
            self.specs = self._open_pth(max_bytes)
        else:
            self.format = "safetensors"
            self.specs = self._open_safetensors(head)
        if not self.specs:
            raise WeightsError("weights file holds no tensors")

    # --- opening -------------------------------------------------------------------------------
    def _open_safetensors(self, head: bytes) -> dict[str, Spec]:
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER or header_len + 8 > self.size:
            raise WeightsError("not a usable safetensors file: its header length is impossible")
        with self.path.open("rb") as fh:
            fh.seek(8)
            raw = fh.read(header_len)
        try:
            header = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # (never echo its bytes)
            raise WeightsError("not a valid safetensors file: its header is not JSON") from exc
        if not isinstance(header, dict):
            raise WeightsError("not a valid safetensors file: header is not an object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise WeightsError("not a valid safetensors file: __metadata__ is not text to text")
        self.metadata = metadata
        base, data_len = 8 + header_len, self.size - 8 - header_len
        specs: dict[str, Spec] = {}
        spans = []
        for key, entry in header.items():
            try:
                dtype = DTYPES[entry["dtype"]]
                shape = tuple(int(d) for d in entry["shape"])
                start, end = (int(x) for x in entry["data_offsets"])
            except (KeyError, TypeError, ValueError) as exc:
                raise WeightsError(
                    f"safetensors entry {key!r} is malformed or of an unsupported dtype"
                ) from exc
            if any(d < 0 for d in shape) or not 0 <= start <= end <= data_len:
                raise WeightsError(f"safetensors entry {key!r} points outside the file")
            if end - start != _numel(shape) * dtype.itemsize:
                raise WeightsError(f"safetensors entry {key!r}: size does not match its shape")
            specs[key] = (dtype, shape)
            self._offsets[key] = (base + start, base + end)
            spans.append((start, end))
        spans.sort()
        for (_, e1), (s2, _) in itertools.pairwise(spans):
            if s2 < e1:
                raise WeightsError("safetensors entries overlap")
        with self.path.open("rb") as fh:
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
        return specs

    def _open_pth(self, max_bytes: int) -> dict[str, Spec]:
        try:
            with zipfile.ZipFile(self.path) as zf:
                infos = zf.infolist()
                if len(infos) > MAX_ZIP_ENTRIES:
                    raise WeightsError(f".pth archive has {len(infos)} entries, too many")
                declared = sum(i.file_size for i in infos)
                if declared > max_bytes:
                    raise WeightsError(
                        f".pth archive declares {declared} bytes uncompressed, over the cap of "
                        f"{max_bytes}; refused unread"
                    )
        except zipfile.BadZipFile as exc:
            raise WeightsError(f"not a valid .pth archive: {exc}") from exc
        try:
            obj = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # UnpicklingError, RuntimeError, ... for hostile files
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise WeightsError(f"refused by the safe loader (weights_only=True): {first}") from exc
        if not isinstance(obj, dict):
            raise WeightsError(
                f".pth must hold a state_dict (a dict of tensors), found {type(obj).__name__}; "
                "save it with torch.save(model.state_dict(), path)"
            )
        specs: dict[str, Spec] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise WeightsError(f"state_dict key {key!r} is not a string")
            if not isinstance(value, torch.Tensor):
                raise WeightsError(f"{key!r} is a {type(value).__name__}, not a tensor")
            if value.layout != torch.strided:
                raise WeightsError(f"{key!r} is a {value.layout} tensor; only dense tensors")
            if value.dtype not in NAMES:
                raise WeightsError(f"{key!r} has unsupported dtype {value.dtype}")
            specs[key] = (value.dtype, tuple(value.shape))
        self._state = obj
        return specs

    # --- reading -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Tensor names, sorted."""
        return sorted(self.specs)

    @property
    def signature(self) -> str:
        """See `signature_of`."""
        return signature_of(self.specs)

    def get(self, key: str) -> torch.Tensor:
        """The tensor `key`, as a read-only view where possible (do not write to it)."""
        dtype, shape = self.specs[key]
        if self._state is not None:
            return self._state[key]
        start, end = self._offsets[key]
        if end == start:
            return torch.empty(shape, dtype=dtype)
        assert self._mm is not None
        flat = torch.frombuffer(self._mm, dtype=dtype, count=_numel(shape), offset=start)
        return flat.view(shape)

    def release(self, key: str, first: int = 0, count: int | None = None) -> None:
        """Drop a tensor's pages (or elements [first, first+count)) from this process's memory."""
        if self._state is not None:  # a .pth: torch mapped it (privately, never written)
            tensor = self._state[key]
            size = tensor.element_size()
            total = tensor.numel() - first if count is None else count
            _drop_inside(tensor.data_ptr() + first * size, total * size)
            return
        if self._mm is None:
            return
        dtype = self.specs[key][0]
        start, end = self._offsets[key]
        lo = start + first * dtype.itemsize
        hi = end if count is None else min(end, lo + count * dtype.itemsize)
        lo -= lo % FAULT_AROUND
        hi = min(self.size, hi + FAULT_AROUND - 1 - (hi - 1) % FAULT_AROUND)
        if hi > lo:
            self._mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def release_all(self) -> None:
        """Drop every page of the file from this process (also stray fault-around neighbours)."""
        if self._mm is not None:
            self._mm.madvise(mmap.MADV_DONTNEED, 0, self.size)
        for key in self._state or ():
            self.release(key)

    def close(self) -> None:
        """Unmap the file (views still alive keep it mapped until they are freed)."""
        self._state = None
        if self._mm is not None:
            with contextlib.suppress(BufferError):  # a view escaped: unmapped when collected
                self._mm.close()
            self._mm = None

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_finite(self) -> None:
        """Refuse NaN or infinite values, one tensor at a time.

        Raises:
            WeightsError: naming the first offending tensor.
        """
        for key in self.names():
            value = self.get(key)
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise WeightsError(f"{key!r} contains NaN or infinite values")
            del value
            self.release(key)

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(key, view) in sorted order, releasing each tensor's pages after the caller is done."""
        for key in self.names():
            yield key, self.get(key)
            self.release(key)


class SafetensorsWriter:
    """Writes a safetensors file tensor by tensor (header first, from the known specs)."""

    def __init__(self, path: str | Path, specs: dict[str, Spec]) -> None:
        self.order = sorted(specs)
        self.specs = specs
        header: dict[str, object] = {}
        offset = 0
        for key in self.order:
            dtype, shape = specs[key]
            size = _numel(shape) * dtype.itemsize
            header[key] = {
                "dtype": NAMES[dtype],
                "shape": list(shape),
                "data_offsets": [offset, offset + size],
            }
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned
        self.path = Path(path)
        self._fh = self.path.open("wb")  # closed by close() or abort()
        self._fh.write(struct.pack("<Q", len(raw)) + raw)
        self._next = 0

    def write(self, key: str, tensor: torch.Tensor) -> None:
        """Append the next tensor (keys must come in sorted order, with their declared spec)."""
        expected = self.order[self._next]
        dtype, shape = self.specs[expected]
        if key != expected or tensor.dtype != dtype or tuple(tensor.shape) != shape:
            got = f"{key} {tensor.dtype} {tuple(tensor.shape)}"
            raise ValueError(f"expected {expected} {dtype} {shape}, got {got}")
        if tensor.numel():
            self._fh.write(tensor.contiguous().view(-1).view(torch.uint8).numpy().data)
        self._next += 1

    def close(self) -> None:
        """Finish the file.

        Raises:
            ValueError: not every tensor was written.
        """
        self._fh.close()
        if self._next != len(self.order):
            raise ValueError(f"only {self._next} of {len(self.order)} tensors were written")

    def abort(self) -> None:
        """Close and delete a file that will not be finished."""
        self._fh.close()
        self.path.unlink(missing_ok=True)

"""Loading untrusted weight files safely, and checking them before any use.

Nodes upload either safetensors or a torch `.pth` zip. Neither is ever unpickled: safetensors has
no code path, and `.pth` goes only through `torch.load(weights_only=True)` after its zip directory
was checked against the size cap (a zip bomb is refused unread).
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open

MAX_SAFETENSORS_HEADER = 100 << 20
MAX_ZIP_ENTRIES = 100_000

StateDict = dict[str, torch.Tensor]


class WeightsError(ValueError):
    """A weight file that cannot be used; the message says why."""


def detect_format(path: Path) -> str:
    """'pth' for a torch zip archive, 'safetensors' otherwise (checked when loading)."""
    with path.open("rb") as fh:
        head = fh.read(4)
    return "pth" if head == b"PK\x03\x04" else "safetensors"


def _check_size(path: Path, max_bytes: int) -> int:
    size = path.stat().st_size
    if size > max_bytes:
        raise WeightsError(f"weights file is {size} bytes, over the cap of {max_bytes}")
    if size == 0:
        raise WeightsError("weights file is empty")
    return size


def _load_pth(path: Path, max_bytes: int) -> StateDict:
    try:
        with zipfile.ZipFile(path) as zf:
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
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for hostile files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"refused by the safe loader (weights_only=True): {first}") from exc
    if not isinstance(obj, dict):
        raise WeightsError(
            f".pth must hold a state_dict (a dict of tensors), found {type(obj).__name__}; "
            "save it with torch.save(model.state_dict(), path)"
        )
    return obj


def _load_safetensors(path: Path, size: int) -> StateDict:
    with path.open("rb") as fh:
        raw = fh.read(8)
    if len(raw) < 8:
        raise WeightsError("not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", raw)
    if header_len > MAX_SAFETENSORS_HEADER or header_len + 8 > size:
        raise WeightsError(f"not a usable safetensors file (header length {header_len})")
    try:
        out: StateDict = {}
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                out[key] = f.get_tensor(key)
        return out
    except Exception as exc:
        raise WeightsError(f"not a valid safetensors file: {exc}") from exc


def load_state(path: Path, max_bytes: int) -> StateDict:
    """Load a weight file of either format as a flat dict of tensors, refusing anything else.

    Raises:
        WeightsError: too large, malformed, hostile, or not a flat dict of tensors.
    """
    size = _check_size(path, max_bytes)
    fmt = detect_format(path)
    state = _load_pth(path, max_bytes) if fmt == "pth" else _load_safetensors(path, size)
    if not state:
        raise WeightsError("weights file holds no tensors")
    for key, value in state.items():
        if not isinstance(key, str):
            raise WeightsError(f"state_dict key {key!r} is not a string")
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided:
            raise WeightsError(
                f"{key!r} is a {value.layout} tensor; only dense tensors are accepted"
            )
    return state


def signature(state: StateDict) -> str:
    """A hash of every key's dtype and shape: two files with equal signatures can be averaged."""
    spec = sorted((k, str(v.dtype), list(v.shape)) for k, v in state.items())
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


def check_finite(state: StateDict) -> None:
    """Refuse NaN or infinite values in floating tensors.

    Raises:
        WeightsError: naming the first offending tensor.
    """
    for key, value in state.items():
        if (value.is_floating_point() or value.is_complex()) and not bool(
            torch.isfinite(value).all()
        ):
            raise WeightsError(f"{key!r} contains NaN or infinite values")


def validate_file(path: str, max_bytes: int, expected_signature: str | None) -> str:
    """Check a client's weight file completely (process-pool entry point).

    Args:
        path: the uploaded file.
        max_bytes: size cap.
        expected_signature: keys/shapes/dtypes it must match, None to accept any.

    Returns:
        The file's signature.

    Raises:
        WeightsError: the file must not be used.
    """
    state = load_state(Path(path), max_bytes)
    sig = signature(state)
    if expected_signature is not None and sig != expected_signature:
        raise WeightsError(
            "keys, shapes or dtypes differ from this round's model; train the model given in "
            "GRIDX_INIT_MODEL and save its state_dict"
        )
    check_finite(state)
    return sig

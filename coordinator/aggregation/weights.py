"""Checking untrusted weight files before any use: size, format, keys/shapes/dtypes, finiteness.

Nodes upload either safetensors or a torch `.pth` zip. Neither is ever unpickled: safetensors has
no code path, and `.pth` goes only through `torch.load(weights_only=True)` after its zip directory
was checked against the size cap (a zip bomb is refused unread). See `tensorfile.py`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.tensorfile import TensorFile, signature_of

StateDict = dict[str, torch.Tensor]

__all__ = [
    "StateDict",
    "initial_model",
    "load_state",
    "signature",
    "validate_file",
]


def load_state(path: Path, max_bytes: int) -> StateDict:
    """A whole weight file as a dict of (copied) tensors; for small files and tests.

    Raises:
        WeightsError: too large, malformed, hostile, or not a flat dict of tensors.
    """
    with TensorFile(path, max_bytes) as tf:
        return {k: tf.get(k).clone() for k in tf.names()}


def signature(state: StateDict) -> str:
    """A hash of every key's dtype and shape: two files with equal signatures can be merged."""
    return signature_of({k: (v.dtype, tuple(v.shape)) for k, v in state.items()})


def validate_file(path: str, max_bytes: int, expected_signature: str | None) -> str:
    """Check a client's weight file completely, one tensor in memory at a time (pool entry point).

    Args:
        path: the uploaded file.
        max_bytes: size cap.
        expected_signature: keys/shapes/dtypes it must match, None to accept any.

    Returns:
        The file's signature.

    Raises:
        WeightsError: the file must not be used.
    """
    with TensorFile(path, max_bytes) as tf:
        sig = tf.signature
        if expected_signature is not None and sig != expected_signature:
            raise WeightsError(
                "keys, shapes or dtypes differ from this round's model; train the model given in "
                "GRIDX_INIT_MODEL and save its state_dict"
            )
        tf.check_finite()
    return sig


def initial_model(path: str, out: str, max_bytes: int) -> str:
    """Check a job's starting model (`.pth` state_dict or `.safetensors`) like any upload and
    write it as the `.pth` state_dict every node then loads from GRIDX_INIT_MODEL (pool entry
    point).

    Returns:
        Its signature (the keys/shapes/dtypes that round 0's updates must keep).

    Raises:
        WeightsError: the file must not be used.
    """
    sig = validate_file(path, max_bytes, None)
    torch.save(load_state(Path(path), max_bytes), out)
    return sig

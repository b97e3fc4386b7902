"""Checking untrusted weight files before any use: size, format, keys/shapes/dtypes, finiteness.

Nodes upload either safetensors or a torch `.pth` zip. Neither is ever unpickled: safetensors has
no code path, and `.pth` goes only through `torch.load(weights_only=True)` after its zip directory
was checked against the size cap (a zip bomb is refused unread). See `tensorfile.py`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gridx.coordinator.aggregation.errors import UnclippedUpdate, WeightsError
from gridx.coordinator.aggregation.pthfile import PthWriter
from gridx.coordinator.aggregation.tensorfile import TensorFile, signature_of

StateDict = dict[str, torch.Tensor]

__all__ = [
    "StateDict",
    "initial_model",
    "load_state",
    "signature",
    "update_norm",
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


def validate_file(
    path: str,
    max_bytes: int,
    expected_signature: str | None,
    base: str | None = None,
    max_norm: float | None = None,
    frozen: bool = False,
) -> str:
    """Check a client's weight file completely, one tensor in memory at a time (pool entry point).

    Args:
        path: the uploaded file.
        max_bytes: size cap.
        expected_signature: keys/shapes/dtypes it must match, None to accept any.
        base: the round's input model, against which `max_norm` bounds the update.
        max_norm: the largest L2 norm the update (weights minus `base`) may have (a node
            that clips its own update: checked, never clipped silently).
        frozen: every tensor that is not floating point must equal `base`'s (a private job:
            clipping and noise touch float tensors only, so any other would leave un-noised).

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
        if base is not None and (max_norm is not None or frozen):
            norm = update_norm(tf, base, max_bytes, frozen)
            if max_norm is not None and norm > max_norm * (1 + 1e-4):
                raise UnclippedUpdate(
                    f"the update's L2 norm is {norm:.6g}, over the job's clip_norm {max_norm:g}: "
                    "the job clips on the nodes (dp.client_clip), so this node did not"
                )
    return sig


def update_norm(tf: TensorFile, base: str, max_bytes: int, frozen: bool = False) -> float:
    """The L2 norm of `tf`'s float tensors minus `base`'s, one tensor at a time.

    Raises:
        WeightsError: `base` does not match `tf`, or (`frozen`) a tensor that is not floating
            point differs from `base`'s.
    """
    total = 0.0
    with TensorFile(base, max_bytes) as b:
        if b.signature != tf.signature:
            raise WeightsError("keys, shapes or dtypes differ from this round's input model")
        for key in tf.names():
            if not tf.specs[key][0].is_floating_point:
                if frozen and not torch.equal(tf.get(key), b.get(key)):
                    raise WeightsError(
                        f"{key!r} is not floating point and changed: a private (dp) job's "
                        "updates may change float tensors only (noise covers nothing else)"
                    )
                tf.release(key)
                b.release(key)
                continue
            diff = tf.get(key).to(torch.float64) - b.get(key).to(torch.float64)
            total += float(torch.dot(diff.view(-1), diff.view(-1)))
            tf.release(key)
            b.release(key)
    return total**0.5


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
    with TensorFile(path, max_bytes) as tf:
        writer = PthWriter(out, tf.specs, crc32=False)
        for key, value in tf.items():
            writer.write(key, value)
        writer.close()
    return sig

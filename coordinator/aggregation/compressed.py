"""Compressed updates from nodes, decoded as the untrusted input they are.

A job with `compress` has its nodes send their update (model minus the round's model) encoded
per tensor (`int8`, `int4`: blockwise scales; `topk`: indices and values); the format is in
`gridx.node.task_wrapper.encode`. `decode_update` checks everything before use (the entry set
matches the round's model exactly, every entry's dtype and shape follows from the model's,
scales and values finite, indices increasing and in range) and writes the model the update
makes, `base + decoded`, as an ordinary safetensors file, one tensor in memory at a time. From
then on it is a client file like any other: validated, clipped, noised, merged by any strategy.
"""

from __future__ import annotations

import math

import torch

from gridx.coordinator.aggregation.errors import WeightsError
from gridx.coordinator.aggregation.tensorfile import SafetensorsWriter, Spec, TensorFile

ENCODINGS = ("int8", "int4", "topk")
MAX_BLOCK = 1 << 20


def is_encoded(path: str, max_bytes: int) -> bool:
    """Whether a result file is an encoded update (else a whole model).

    Raises:
        WeightsError: the file is not a usable weight file at all.
    """
    with TensorFile(path, max_bytes) as tf:
        return "gridx_update" in tf.metadata


def decode_update(path: str, base: str, out: str, max_bytes: int) -> int:
    """Write `base + update` (the update encoded in `path`) to `out` as safetensors.

    Returns:
        The encoded file's size in bytes.

    Raises:
        WeightsError: the file is malformed or does not fit the round's model.
    """
    with TensorFile(path, max_bytes) as tf, TensorFile(base, 1 << 62) as model:
        kind, block = _header(tf)
        expected = _entries(model.specs, kind, block, tf.specs)
        if set(tf.specs) != set(expected):
            extra = sorted(set(tf.specs) - set(expected))[:3]
            missing = sorted(set(expected) - set(tf.specs))[:3]
            raise WeightsError(
                f"the {kind} update's entries do not fit the round's model "
                f"(unexpected {extra}, missing {missing})"
            )
        for name, spec in expected.items():
            if tf.specs[name] != spec:
                raise WeightsError(f"update entry {name!r} is {tf.specs[name]}, expected {spec}")
        writer = SafetensorsWriter(out, model.specs)
        try:
            for key in model.names():
                writer.write(key, _decoded(tf, model, key, kind, block))
                tf.release_all()
                model.release_all()
        except BaseException:
            writer.abort()
            raise
        writer.close()
        return tf.size


def _header(tf: TensorFile) -> tuple[str, int]:
    kind = tf.metadata.get("gridx_update", "")
    if kind not in ENCODINGS:
        raise WeightsError(f"unknown update encoding {kind!r}; expected one of {ENCODINGS}")
    try:
        block = int(tf.metadata.get("block", "0"))
    except ValueError:
        block = 0
    if kind != "topk" and (not 2 <= block <= MAX_BLOCK or block % 2):
        raise WeightsError(f"the update's block size must be even, 2 to {MAX_BLOCK}")
    return kind, block


def _entries(
    specs: dict[str, Spec], kind: str, block: int, sent: dict[str, Spec]
) -> dict[str, Spec]:
    """The entries an update of this model must hold, with their dtypes and shapes (top-k's
    length is the sender's choice, at most the tensor's size: taken from what was sent)."""
    out: dict[str, Spec] = {}
    for key, (dtype, shape) in specs.items():
        n = math.prod(shape)
        if not dtype.is_floating_point:
            out[f"r:{key}"] = (dtype, shape)
        elif kind == "topk":
            got = sent.get(f"i:{key}", (torch.int32, (0,)))[1]
            if len(got) != 1 or got[0] > n:
                raise WeightsError(f"update entry 'i:{key}' has shape {got}: at most ({n},)")
            m = got[0]
            out[f"i:{key}"] = (torch.int32, (m,))
            out[f"v:{key}"] = (torch.float32, (m,))
        else:
            packed = n if kind == "int8" else (n + 1) // 2
            out[f"q:{key}"] = (torch.int8 if kind == "int8" else torch.uint8, (packed,))
            out[f"s:{key}"] = (torch.float32, (math.ceil(n / block),))
    return out


def _decoded(tf: TensorFile, model: TensorFile, key: str, kind: str, block: int) -> torch.Tensor:
    """Tensor `key` of the model the update makes."""
    dtype, shape = model.specs[key]
    if not dtype.is_floating_point:
        return tf.get(f"r:{key}")
    base = model.get(key).reshape(-1).to(torch.float32, copy=True)
    n = base.numel()
    if kind == "topk":
        index, values = tf.get(f"i:{key}").to(torch.int64), tf.get(f"v:{key}")
        if index.numel() and (
            int(index[0]) < 0 or int(index[-1]) >= n or bool((index[1:] <= index[:-1]).any())
        ):
            raise WeightsError(f"top-k indices of {key!r} are out of range or not increasing")
        if not bool(torch.isfinite(values).all()):
            raise WeightsError(f"top-k values of {key!r} are NaN or infinite")
        return base.index_add_(0, index, values).to(dtype).view(shape)
    scale = tf.get(f"s:{key}")
    if not bool(torch.isfinite(scale).all()) or bool((scale < 0).any()):
        raise WeightsError(f"scales of {key!r} must be finite and non-negative")
    q = tf.get(f"q:{key}")
    if kind == "int4":
        q = torch.stack([q & 15, q >> 4], dim=1).view(-1).to(torch.int16) - 8
    values = torch.nn.functional.pad(q.to(torch.float32), (0, scale.numel() * block - q.numel()))
    delta = (values.view(-1, block) * scale[:, None]).view(-1)[:n]
    return base.add_(delta).to(dtype).view(shape)

"""Runs in the task's sandbox, in place of the job's script: the script, then what the node adds
to the model it wrote before anything leaves the machine.

- **Clipping** (`GRIDX_CLIP_NORM`, client-side differential privacy): the update (model minus
  the round's model) is shrunk to that L2 norm.
- **Compression** (`GRIDX_COMPRESS`: `int8`, `int4` or `topk:FRACTION`): the file sent is the
  update, encoded, instead of the model (see `encode` for the format; the coordinator decodes it
  as the untrusted input it is, `gridx.coordinator.aggregation.compressed`). Top-k keeps what it
  did not send (error feedback) in `GRIDX_RESIDUAL`, which the node carries to the job's next
  task on this machine.

Standalone on purpose, like the warm runner: the node writes this file's source into the task's
folder, so it imports nothing of Grid-X, only the standard library and the job's own torch.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import runpy
import struct
import sys
from typing import Any

BLOCK = 128
"""Values per scale of the int8 and int4 encodings (a scale is 4 bytes: 3% more for int8)."""
LEVELS = {"int8": 127, "int4": 7}
_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64"}
_NAMES |= {"I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def main() -> None:
    script = os.environ["GRIDX_SCRIPT"]
    sys.argv[0] = script
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    out, base = os.environ.get("GRIDX_OUTPUT"), os.environ.get("GRIDX_INIT_MODEL")
    if out is None or not os.path.exists(out):
        return  # no model: the node reports that as for any script
    if base is None:
        sys.exit("gridx: clipping or compressing an update needs the round's model")
    import torch

    model, start = load(out), load(base)
    if "GRIDX_CLIP_NORM" in os.environ:
        clip(model, start, float(os.environ["GRIDX_CLIP_NORM"]))
    spec = os.environ.get("GRIDX_COMPRESS")
    if spec:
        residual_path = os.environ.get("GRIDX_RESIDUAL", "")
        residual = None
        if residual_path and os.path.exists(residual_path):
            residual = torch.load(residual_path, map_location="cpu", weights_only=True)
        tensors, metadata, left = encode(model, start, spec, residual)
        if "GRIDX_CLIP_NORM" in os.environ:  # what is sent, decoded, keeps to the norm
            rescale(tensors, metadata, float(os.environ["GRIDX_CLIP_NORM"]))
        if left is not None and residual_path:  # (a new file: the node's copy is not ours)
            torch.save(left, residual_path + ".tmp")
            os.replace(residual_path + ".tmp", residual_path)
        write_safetensors(out + ".tmp", tensors, metadata)
        os.replace(out + ".tmp", out)
    elif "GRIDX_CLIP_NORM" in os.environ:
        torch.save(model, out)


def load(path: str) -> dict[str, Any]:
    """A state_dict from a `.pth` (weights only) or a safetensors file."""
    import torch

    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:4] == b"PK\x03\x04":
        return torch.load(path, map_location="cpu", weights_only=True)
    with open(path, "rb") as fh:
        raw = fh.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    state = {}
    for key, entry in header.items():
        dtype = getattr(torch, _NAMES[entry["dtype"]])
        lo, hi = entry["data_offsets"]
        data = bytearray(raw[8 + n + lo : 8 + n + hi])
        flat = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
        state[key] = flat.view(entry["shape"])
    return state


def _floats(model: dict[str, Any], start: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in model.items() if v.is_floating_point() and k in start)


def clip(model: dict[str, Any], start: dict[str, Any], limit: float) -> None:
    """Shrink the update (model minus start) to at most `limit` in L2 norm, in place."""
    keys = _floats(model, start)
    norm = math.sqrt(sum(float(((model[k].double() - start[k].double()) ** 2).sum()) for k in keys))
    if norm > limit:
        scale = limit / norm * (1 - 1e-6)
        for k in keys:
            base_k = start[k].to(model[k].dtype)
            model[k] = (base_k + (model[k] - base_k) * scale).contiguous()
    print(f"gridx: update norm {norm:.6g}, clipped to {min(norm, limit):.6g}", file=sys.stderr)


def encode(
    model: dict[str, Any], start: dict[str, Any], spec: str, residual: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any] | None]:
    """The update of `model` from `start`, encoded per tensor by `spec`.

    Format (a safetensors file; `__metadata__`: `gridx_update` = the encoding, `block`): for each
    float tensor `K` of the round's model, with its n values flattened,
    - `int8`: `q:K` I8 (n) and `s:K` F32 (ceil(n / block)): value i = q[i] * s[i // block];
    - `int4`: `q:K` U8 (ceil(n / 2)), two values a byte (low nibble first), each nibble minus 8,
      times its block's scale `s:K`;
    - `topk:F`: `i:K` I32 (m, increasing) and `v:K` F32 (m): the m = ceil(F * n) largest
      changes (the rest of the update and of each value sent waits in the residual);
    and for every other tensor `r:K`, its new value as it is.

    Returns:
        The tensors, the metadata and the residual to keep (top-k only, else None).
    """
    import torch

    kind, _, fraction = spec.partition(":")
    tensors: dict[str, Any] = {}
    left: dict[str, Any] | None = {} if kind == "topk" else None
    for key in sorted(start):
        if key not in model:
            raise SystemExit(f"gridx: the model lost tensor {key!r}; keep the round's model's keys")
        new, old = model[key], start[key]
        if not old.is_floating_point():
            tensors[f"r:{key}"] = new.contiguous()
            continue
        delta = new.detach().to(torch.float32).reshape(-1) - old.to(torch.float32).reshape(-1)
        if kind == "topk":
            assert left is not None
            if residual is not None and key in residual and residual[key].numel() == delta.numel():
                delta += residual[key].to(torch.float32)
            keep = max(1, math.ceil(float(fraction) * delta.numel())) if delta.numel() else 0
            index = torch.topk(delta.abs(), keep, sorted=False).indices.sort().values
            tensors[f"i:{key}"] = index.to(torch.int32)
            tensors[f"v:{key}"] = delta[index].contiguous()
            delta[index] = 0
            left[key] = delta
        else:
            tensors[f"q:{key}"], tensors[f"s:{key}"] = quantize(delta, LEVELS[kind])
    return tensors, {"gridx_update": kind, "block": str(BLOCK)}, left


def quantize(delta: Any, levels: int) -> tuple[Any, Any]:
    """Round to `levels` steps either side of 0 per block of `BLOCK` values (scale: the block's
    largest magnitude / levels); int4 packs two values a byte."""
    import torch

    n = delta.numel()
    blocks = math.ceil(n / BLOCK)
    padded = torch.nn.functional.pad(delta, (0, blocks * BLOCK - n)).view(blocks, BLOCK)
    scale = padded.abs().amax(dim=1) / levels
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(padded / safe[:, None]).clamp_(-levels, levels).view(-1)[:n]
    if levels == LEVELS["int8"]:
        return q.to(torch.int8), scale
    nibbles = (q + 8).to(torch.uint8)
    if n % 2:
        nibbles = torch.cat([nibbles, torch.tensor([8], dtype=torch.uint8)])
    return (nibbles[0::2] | (nibbles[1::2] << 4)).contiguous(), scale


def rescale(tensors: dict[str, Any], metadata: dict[str, str], limit: float) -> None:
    """Shrink an encoded update whose decoded norm exceeds `limit` (quantization may add a
    little) by scaling its scales (or top-k values): decoding is linear in them."""
    import torch

    kind = metadata["gridx_update"]
    total = 0.0
    for key, value in tensors.items():
        if kind == "topk" and key.startswith("v:"):
            total += float((value.double() ** 2).sum())
        elif kind != "topk" and key.startswith("q:"):
            total += float(
                (decode_blocks(value, tensors["s:" + key[2:]], kind).double() ** 2).sum()
            )
    norm = math.sqrt(total)
    if norm <= limit:
        return
    factor = limit / norm * (1 - 1e-6)
    prefix = "v:" if kind == "topk" else "s:"
    for key in [k for k in tensors if k.startswith(prefix)]:
        tensors[key] = (tensors[key] * factor).to(torch.float32)


def decode_blocks(q: Any, scale: Any, kind: str) -> Any:
    """The values of an int8 or int4 tensor (as many as its blocks hold; the caller cuts)."""
    import torch

    if kind == "int4":
        q = torch.stack([q & 15, q >> 4], dim=1).view(-1).to(torch.int16) - 8
    blocks = scale.numel()
    padded = torch.nn.functional.pad(q.to(torch.float32), (0, blocks * BLOCK - q.numel()))
    return (padded.view(blocks, BLOCK) * scale[:, None]).view(-1)


def write_safetensors(path: str, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    """`tensors` as a safetensors file, in sorted key order."""
    import torch

    names = {getattr(torch, v): k for k, v in _NAMES.items()}
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key in sorted(tensors):
        value = tensors[key]
        size = value.numel() * value.element_size()
        header[key] = {
            "dtype": names[value.dtype],
            "shape": list(value.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for key in sorted(tensors):
            value = tensors[key].contiguous()
            if value.numel():  # (without numpy, which the job may not have)
                fh.write(ctypes.string_at(value.data_ptr(), value.numel() * value.element_size()))


if __name__ == "__main__":
    main()

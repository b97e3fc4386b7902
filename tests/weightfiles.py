"""Weight files for tests: honest ones and hostile ones."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file


def state(seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """A small state_dict with a float weight, a float bias and an integer counter."""
    g = torch.Generator().manual_seed(seed)
    return {
        "fc.weight": torch.randn(3, 4, generator=g) * scale,
        "fc.bias": torch.randn(3, generator=g) * scale,
        "bn.num_batches_tracked": torch.tensor(seed * 10, dtype=torch.int64),
    }


def write_pth(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    """A torch.save'd state_dict."""
    torch.save(sd, path)
    return path


def write_safetensors(path: Path, sd: dict[str, torch.Tensor]) -> Path:
    """The same as safetensors."""
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


class _Payload:
    """Unpickling this runs `touch MARKER`: what a hostile node would send."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def write_pickle_bomb(path: Path, marker: Path) -> Path:
    """A `.pth` zip laid out like torch.save's, whose data.pkl executes a command on plain load."""
    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path) as zf:
        entries = {i.filename: zf.read(i.filename) for i in zf.infolist()}
    pkl_name = next(n for n in entries if n.endswith("data.pkl"))
    entries[pkl_name] = pickle.dumps(_Payload(marker), protocol=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    path.write_bytes(buf.getvalue())
    return path

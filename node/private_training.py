"""What a node adds to a task on private data: its own copy of the job's dataset, and clipping
its own update before it leaves the machine (differential privacy with client-side clipping)."""

from __future__ import annotations

import csv
from pathlib import Path

from gridx.node.datasets import Catalog, data_path, stage
from gridx.node.errors import DatasetError
from gridx.schemas.agent import LocalData

CLIP_SCRIPT = "gridx_clip.py"
"""Runs the job's script, then clips the model it wrote; in the task's sandbox, like the script."""

_CLIP_SOURCE = '''\
"""Grid-X: run the job's script, then clip its update to GRIDX_CLIP_NORM (client-side DP)."""
import os, runpy, sys

script = os.environ["GRIDX_SCRIPT"]
sys.argv[0] = script
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    if exc.code not in (None, 0):
        raise

import torch

out, base = os.environ["GRIDX_OUTPUT"], os.environ.get("GRIDX_INIT_MODEL")
if base is None or not os.path.exists(out):
    sys.exit("gridx: client-side clipping needs the round's model and the script's output")


def load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True), "pth"
    except Exception:
        from safetensors.torch import load_file
        return load_file(path), "safetensors"


model, kind = load(out)
start, _ = load(base)
floats = [k for k, v in model.items() if v.is_floating_point() and k in start]
norm = sum(float(((model[k].double() - start[k].double()) ** 2).sum()) for k in floats) ** 0.5
limit = float(os.environ["GRIDX_CLIP_NORM"])
if norm > limit:
    scale = limit / norm * (1 - 1e-6)
    for k in floats:
        base_k = start[k].to(model[k].dtype)
        model[k] = (base_k + (model[k] - base_k) * scale).contiguous()
    if kind == "pth":
        torch.save(model, out)
    else:
        from safetensors.torch import save_file
        save_file(model, out)
print(f"gridx: update norm {norm:.6g}, clipped to {min(norm, limit):.6g}", file=sys.stderr)
'''


def local_data(catalog: Catalog, state_dir: Path, wanted: LocalData) -> tuple[Path, Path]:
    """The folder the sandbox shows and the data file (or folder) GRIDX_DATA names.

    Raises:
        DatasetError: this node no longer holds the dataset, or its columns changed.
    """
    found = catalog.find(wanted.name)
    if found is None:
        raise DatasetError(f"this node no longer holds dataset {wanted.name!r}")
    folder = stage(state_dir, found, wanted.columns)
    return folder, data_path(folder, found)


TABLES = {".csv": ",", ".tsv": "\t", ".psv": "|", ".txt": ","}
STAND_IN_ROWS = 8


def blind_copy(src: Path, dest: Path) -> Path:
    """A stand-in for `src` with its shape and none of its rows (what a private job's
    initialisation step sees): a table's header and `STAND_IN_ROWS` rows of zeros, an empty
    JSON Lines file or archive, an empty folder."""
    if src.is_dir():
        dest.mkdir()
        return dest
    delimiter = TABLES.get(src.suffix.lower())
    if delimiter is None:
        dest.write_bytes(b"")
        return dest
    with src.open(newline="", encoding="utf-8", errors="replace") as fh:
        header = next(csv.reader(fh, delimiter=delimiter), [])
    with dest.open("w", newline="") as out:
        writer = csv.writer(out, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows([["0"] * len(header)] * STAND_IN_ROWS)
    return dest


def add_clipping(workdir: Path, script: str, clip_norm: float, env: dict[str, str]) -> str:
    """Set the task up to clip its update: the script to run instead of `script`."""
    (workdir / CLIP_SCRIPT).write_text(_CLIP_SOURCE)
    env["GRIDX_SCRIPT"] = script
    env["GRIDX_CLIP_NORM"] = repr(clip_norm)
    return CLIP_SCRIPT

"""What a node adds to a task on private data: its own copy of the job's dataset, or for the
initialisation step a stand-in with its columns and no rows (clipping the update before it
leaves the machine is `update_wrapping`'s)."""

from __future__ import annotations

import csv
from pathlib import Path

from gridx.node.datasets import Catalog, data_path, stage
from gridx.node.errors import DatasetError
from gridx.schemas.agent import LocalData


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

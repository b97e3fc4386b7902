"""Datasets this node holds for jobs that train where the data lives.

The owner declares them (`gridx-node dataset add NAME PATH`) in `<state>/datasets.json`; the node
advertises only each one's name, format, columns and row count (`Catalog.infos`, re-read at every
heartbeat, so a change or a removal reaches the coordinator within one). A task on a dataset gets
a private read-only copy of it (`stage`), made once per version of the data and column order:
the sandbox's user can read it whatever the original's permissions, a table whose header lists
the job's columns in another order is rewritten in the job's order (mapped by name), and the
owner may edit the original while a task runs.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import msgspec

from gridx.node.errors import DatasetError
from gridx.schemas.agent import DatasetInfo

CATALOG = "datasets.json"
STAGED = "datasets"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DELIMITERS = {"csv": ",", "tsv": "\t"}
MAX_DATASETS = 64
"""As many as a heartbeat may carry (`HeartbeatRequest.datasets`)."""


class Declared(msgspec.Struct, kw_only=True):
    """One dataset as the owner declared it, with what was measured of it."""

    name: str
    path: str
    description: str = ""
    allow_users: list[str] = []
    format: str = ""
    columns: list[str] = []
    rows: int = 0
    stamp: list[int] = []
    """Size and modification time (files, total size, latest mtime for a folder) when measured."""

    def info(self) -> DatasetInfo:
        """What the node advertises: never the data, nor where it lives."""
        return DatasetInfo(
            name=self.name,
            format=self.format,  # type: ignore[arg-type]
            columns=self.columns,
            rows=self.rows,
            description=self.description,
            allow_users=self.allow_users,
        )


def _format(path: Path) -> str:
    if path.is_dir():
        return "folder"
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: a dataset is a .csv, .tsv, .jsonl file or a folder (got {path.suffix!r})"
        )
    return kind


def stamp(path: Path) -> list[int]:
    """What changes when the data does: size and mtime (a folder: files, bytes, latest mtime)."""
    if not path.is_dir():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    files, size, latest = 0, 0, path.stat().st_mtime_ns
    for root, _, names in os.walk(path):
        for n in names:
            st = os.stat(os.path.join(root, n))
            files, size, latest = files + 1, size + st.st_size, max(latest, st.st_mtime_ns)
    return [files, size, latest]


def measure(d: Declared) -> Declared:
    """`d` with its format, columns and row count read from its data.

    Raises:
        DatasetError: the path is missing or unreadable, or not a table it can read.
    """
    path = Path(d.path)
    try:
        kind = _format(path)
        st = stamp(path)
        if kind == "folder":
            return _checked(
                msgspec.structs.replace(d, format=kind, columns=[], rows=st[0], stamp=st)
            )
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            if kind == "jsonl":
                columns, rows = _jsonl(fh)
            else:
                reader = csv.reader(fh, delimiter=DELIMITERS[kind])
                columns = next(reader, [])
                rows = sum(1 for row in reader if row)
    except OSError as exc:
        raise DatasetError(f"{path}: {exc.strerror or exc}") from exc
    except csv.Error as exc:
        raise DatasetError(f"{path}: not a readable {kind} table ({exc})") from exc
    return _checked(msgspec.structs.replace(d, format=kind, columns=columns, rows=rows, stamp=st))


def _checked(d: Declared) -> Declared:
    """`d` if the coordinator will take what it says of it (a heartbeat it refused would take
    the node offline).

    Raises:
        DatasetError: too many columns, names too long, a bad email or description.
    """
    try:
        msgspec.convert(msgspec.to_builtins(d.info()), DatasetInfo)
    except msgspec.ValidationError as exc:
        raise DatasetError(f"{d.path}: cannot be offered as dataset {d.name!r}: {exc}") from exc
    return d


def _jsonl(fh: object) -> tuple[list[str], int]:
    columns: list[str] = []
    rows = 0
    for line in fh:  # type: ignore[attr-defined]
        if not line.strip():
            continue
        if rows == 0:
            with contextlib.suppress(ValueError):
                first = json.loads(line)
                columns = [str(k) for k in first] if isinstance(first, dict) else []
        rows += 1
    return columns, rows


def load(state_dir: Path) -> list[Declared]:
    """The declared datasets (none when the catalog does not exist)."""
    try:
        raw = (state_dir / CATALOG).read_bytes()
    except FileNotFoundError:
        return []
    try:
        return msgspec.json.decode(raw, type=list[Declared])
    except msgspec.DecodeError as exc:
        raise DatasetError(f"{state_dir / CATALOG} is damaged ({exc}); fix or delete it") from exc


def save(state_dir: Path, items: list[Declared]) -> None:
    """Write the catalog atomically, readable by the node's user only."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".datasets-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(sorted(items, key=lambda d: d.name))))
    os.replace(tmp, state_dir / CATALOG)


def add(
    state_dir: Path, name: str, path: Path, description: str, allow_users: list[str]
) -> Declared:
    """Declare (or redeclare) a dataset, measured now.

    Raises:
        DatasetError: a bad name, or data it cannot read.
    """
    try:
        msgspec.convert({"name": name, "format": "csv"}, DatasetInfo)
    except msgspec.ValidationError as exc:
        raise DatasetError(
            f"{name!r} is not a dataset name: letters, digits, '.', '_', '-' ({exc})"
        ) from exc
    emails = sorted({e.strip().lower() for e in allow_users if e.strip()})
    item = measure(
        Declared(
            name=name,
            path=str(path.expanduser().resolve()),
            description=description,
            allow_users=emails,
        )
    )
    save(state_dir, [d for d in load(state_dir) if d.name != name] + [item])
    return item


def remove(state_dir: Path, name: str) -> bool:
    """Forget a dataset and its staged copies; False when there was none of that name."""
    items = load(state_dir)
    kept = [d for d in items if d.name != name]
    if len(kept) == len(items):
        return False
    save(state_dir, kept)
    for old in (state_dir / STAGED).glob(f"{name}@*"):
        shutil.rmtree(old, ignore_errors=True)
    return True


class Catalog:
    """The declared datasets as the node advertises them, re-measured when their data changed."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.problems: dict[str, str] = {}
        """Datasets left out of what is advertised, and why (shown on the status page)."""

    def current(self) -> list[Declared]:
        """The datasets whose data is readable now (re-measured where it changed)."""
        items, out, changed = load(self.state_dir), [], False
        self.problems = {}
        for d in items:
            try:
                if stamp(Path(d.path)) != d.stamp:
                    d, changed = measure(d), True
                out.append(d)
            except (OSError, DatasetError) as exc:
                self.problems[d.name] = str(exc)
        if changed:
            save(self.state_dir, [*out, *(d for d in items if d.name in self.problems)])
        return out

    def infos(self) -> list[DatasetInfo]:
        """What the heartbeat advertises (the first MAX_DATASETS by name)."""
        found = sorted(self.current(), key=lambda d: d.name)
        for d in found[MAX_DATASETS:]:
            self.problems[d.name] = f"a node offers at most {MAX_DATASETS} datasets"
        return [d.info() for d in found[:MAX_DATASETS]]

    def find(self, name: str) -> Declared | None:
        """A readable dataset of that name."""
        return next((d for d in self.current() if d.name == name), None)


def stage(state_dir: Path, d: Declared, columns: list[str]) -> Path:
    """A read-only copy of `d` for tasks (made once per data version and column order): its
    folder is what the sandbox shows; the data is `folder/<the original's name>`.

    Raises:
        DatasetError: the table lacks some of `columns` or has others (the job's are fixed).
    """
    if d.format in DELIMITERS and columns and sorted(columns) != sorted(d.columns):
        raise DatasetError(
            f"dataset {d.name!r} now has columns {d.columns}, the job trains on {columns}"
        )
    order = columns if d.format in DELIMITERS and columns else []
    key = hashlib.sha256(json.dumps([d.path, d.stamp, order]).encode()).hexdigest()[:16]
    root = state_dir / STAGED
    folder = root / f"{d.name}@{key}"
    if folder.exists():
        return folder
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        src, dst = Path(d.path), tmp / Path(d.path).name
        if d.format == "folder":
            shutil.copytree(src, dst, symlinks=False)
        elif order and order != d.columns:
            _reorder(src, dst, DELIMITERS[d.format], order)
        else:
            shutil.copyfile(src, dst)
        _readable(tmp)
        for old in root.glob(f"{d.name}@*"):  # earlier versions are not needed any more
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"could not copy dataset {d.name!r}: {exc}") from exc
    return folder


def data_path(folder: Path, d: Declared) -> Path:
    """The staged data inside its folder."""
    return folder / Path(d.path).name


def _reorder(src: Path, dst: Path, delimiter: str, order: list[str]) -> None:
    csv.field_size_limit(min(sys.maxsize, 1 << 30))
    with src.open(newline="", encoding="utf-8") as fin, dst.open("w", newline="") as fout:
        reader = csv.reader(fin, delimiter=delimiter)
        header = next(reader)
        index = [header.index(c) for c in order]
        writer = csv.writer(fout, delimiter=delimiter, lineterminator="\n")
        writer.writerow(order)
        for row in reader:
            if row:
                writer.writerow([row[i] if i < len(row) else "" for i in index])


def _readable(folder: Path) -> None:
    """World-readable files and traversable folders (the sandbox's user is not the node's);
    the state folder above stays the node's own."""
    for root, dirs, files in os.walk(folder):
        os.chmod(root, 0o755)
        for n in files:
            os.chmod(os.path.join(root, n), 0o444)
        for n in dirs:
            os.chmod(os.path.join(root, n), 0o755)

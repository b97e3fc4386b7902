"""Splitting a dataset into shards by rows: delimited text tables (the delimiter sniffed, the
header kept in every shard) and JSON Lines (one record per line), under a partitioner (`iid`,
`by_column`, `dirichlet`). Two streaming passes: one reads each row's key, `plan` (a pure
function) gives each row its shard, the other writes the rows."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

from gridx.coordinator.errors import InvalidInput
from gridx.schemas.jobs import ByColumn, Dirichlet, Iid, Partition

csv.field_size_limit(16 << 20)
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".psv")
LINE_SUFFIXES = (".jsonl", ".ndjson")
DELIMITERS = ",\t;|"
DIRICHLET_DRAWS = 100


def splitter(name: str) -> str | None:
    """How a dataset called `name` is sharded: `table`, `lines`, or None (sent whole)."""
    lower = name.lower()
    if lower.endswith(TABLE_SUFFIXES):
        return "table"
    if lower.endswith(LINE_SUFFIXES):
        return "lines"
    return None


def sniff_delimiter(lines: list[str]) -> str:
    """The candidate that splits every sampled line into the same number (> 1) of fields,
    the most fields winning; a comma when none does (a one-column table)."""
    best, best_fields = ",", 1
    for d in DELIMITERS:
        counts = {len(next(csv.reader([line], delimiter=d))) for line in lines if line.strip()}
        if len(counts) == 1 and (n := counts.pop()) > best_fields:
            best, best_fields = d, n
    return best


def plan(keys: list[str], k: int, partition: Partition, seed: int = 0) -> list[int]:
    """The shard of each row, given each row's key (its `column` value; unused for `iid`).

    Raises:
        InvalidInput: fewer rows (or groups) than shards, or no Dirichlet draw that leaves every
            shard a row.
    """
    n = len(keys)
    if n == 0:
        raise InvalidInput("the dataset has no rows", field="data")
    if n < k:
        raise InvalidInput(
            f"the dataset has {n} rows, fewer than the {k} shards asked for; lower `shards`",
            field="shards",
        )
    if isinstance(partition, ByColumn):
        return _by_column(keys, k, partition.column)
    if isinstance(partition, Dirichlet):
        return _dirichlet(keys, k, partition.alpha, seed)
    return [i % k for i in range(n)]


def _by_column(keys: list[str], k: int, column: str) -> list[int]:
    groups = Counter(keys)
    if len(groups) < k:
        raise InvalidInput(
            f"partition by_column: `{column}` has {len(groups)} distinct values, fewer than the "
            f"{k} shards asked for; lower `shards`",
            field="partition.column",
        )
    load = [0] * k
    shard_of: dict[str, int] = {}
    for key, size in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])):
        s = min(range(k), key=lambda i: (load[i], i))  # largest group to the lightest shard
        shard_of[key] = s
        load[s] += size
    return [shard_of[key] for key in keys]


def _dirichlet(keys: list[str], k: int, alpha: float, seed: int) -> list[int]:
    rng = random.Random(seed)
    rows: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        rows[key].append(i)
    for _ in range(DIRICHLET_DRAWS):  # as Flower Datasets: redraw until no shard is empty
        out = [0] * len(keys)
        sizes = [0] * k
        for key in sorted(rows):
            members = rows[key]
            draws = [rng.gammavariate(alpha, 1.0) for _ in range(k)]
            total = sum(draws) or 1.0
            cut, acc = [], 0.0
            for d in draws:
                acc += d / total
                cut.append(round(acc * len(members)))
            start = 0
            for s, end in enumerate(cut):
                for i in members[start:end]:
                    out[i] = s
                sizes[s] += max(0, end - start)
                start = max(start, end)
        if min(sizes) > 0:
            return out
    raise InvalidInput(
        f"partition dirichlet: alpha={alpha} leaves a shard empty in {DIRICHLET_DRAWS} draws; "
        "raise alpha or lower `shards`",
        field="partition.alpha",
    )


def _table(source: Path) -> tuple[str, list[str]]:
    """A table's delimiter and header."""
    with source.open(newline="", encoding="utf-8") as fh:
        delimiter = sniff_delimiter([fh.readline() for _ in range(20)])
        fh.seek(0)
        header = next(csv.reader(fh, delimiter=delimiter), None)
    if header is None:
        raise InvalidInput("the table is empty", field="data")
    return delimiter, header


def _table_rows(source: Path, delimiter: str) -> Iterator[list[str]]:
    """The non-empty data rows of a table (after its header)."""
    with source.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        next(reader, None)
        yield from (row for row in reader if row)


def split_table(
    source: Path, targets: list[Path], partition: Partition | None = None, seed: int = 0
) -> list[int]:
    """Split the data rows of `source` into `targets` by `partition` (default `iid`: row i to
    shard i mod K, which keeps shards balanced in size and class mix even in a sorted file).

    Returns:
        The number of data rows written to each target (the shards' sample weights).

    Raises:
        InvalidInput: the file is empty, not UTF-8, malformed, lacks the partition's column, or
            has fewer rows (groups) than shards.
    """
    partition = partition or Iid()
    try:
        delimiter, header = _table(source)
        column = getattr(partition, "column", None)
        if column is not None and column not in header:
            raise InvalidInput(
                f"partition: the table has no column `{column}` (columns: {', '.join(header)})",
                field="partition.column",
            )
        at = header.index(column) if column is not None else 0
        keys = [row[at] if at < len(row) else "" for row in _table_rows(source, delimiter)]
        shard_of = plan(keys, len(targets), partition, seed)
        handles = [t.open("w", newline="", encoding="utf-8") for t in targets]
        try:
            writers = [csv.writer(h, delimiter=delimiter) for h in handles]
            for w in writers:
                w.writerow(header)
            for row, s in zip(_table_rows(source, delimiter), shard_of, strict=True):
                writers[s].writerow(row)
        finally:
            for h in handles:
                h.close()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the table is not UTF-8 text: {exc}", field="data") from exc
    except csv.Error as exc:
        raise InvalidInput(f"the table is malformed: {exc}", field="data") from exc
    return [shard_of.count(s) for s in range(len(targets))]


def _lines(source: Path) -> Iterator[str]:
    with source.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield line if line.endswith("\n") else line + "\n"


def _line_key(line: str, column: str, number: int) -> str:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InvalidInput(f"line {number} is not JSON: {exc}", field="data") from exc
    if not isinstance(record, dict) or column not in record:
        raise InvalidInput(
            f"partition: line {number} has no field `{column}`", field="partition.column"
        )
    return str(record[column])


def split_lines(
    source: Path, targets: list[Path], partition: Partition | None = None, seed: int = 0
) -> list[int]:
    """Split the non-empty lines of `source` (JSON Lines) into `targets` by `partition`.

    Raises:
        InvalidInput: no lines, not UTF-8, a line without the partition's field, or fewer lines
            (groups) than shards.
    """
    partition = partition or Iid()
    column = getattr(partition, "column", None)
    try:
        keys = [
            _line_key(line, column, i + 1) if column is not None else ""
            for i, line in enumerate(_lines(source))
        ]
        shard_of = plan(keys, len(targets), partition, seed)
        handles = [t.open("w", encoding="utf-8") for t in targets]
        try:
            for line, s in zip(_lines(source), shard_of, strict=True):
                handles[s].write(line)
        finally:
            for h in handles:
                h.close()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the dataset is not UTF-8 text: {exc}", field="data") from exc
    return [shard_of.count(s) for s in range(len(targets))]

"""Splitting a dataset into shards by rows, streaming: delimited text tables (the delimiter
sniffed, the header kept in every shard) and JSON Lines (one record per line)."""

from __future__ import annotations

import csv
from pathlib import Path

from gridx.coordinator.errors import InvalidInput

csv.field_size_limit(16 << 20)
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".psv")
LINE_SUFFIXES = (".jsonl", ".ndjson")
DELIMITERS = ",\t;|"


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


def split_lines(source: Path, targets: list[Path]) -> list[int]:
    """Deal the non-empty lines of `source` (JSON Lines) round-robin into `targets`.

    Raises:
        InvalidInput: no lines, not UTF-8, or fewer lines than shards.
    """
    counts = [0] * len(targets)
    handles = [t.open("w", encoding="utf-8") for t in targets]
    try:
        with source.open(encoding="utf-8") as fh:
            i = 0
            for line in fh:
                if line.strip():
                    handles[i % len(targets)].write(line if line.endswith("\n") else line + "\n")
                    counts[i % len(targets)] += 1
                    i += 1
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the dataset is not UTF-8 text: {exc}", field="data") from exc
    finally:
        for h in handles:
            h.close()
    return _enough(counts)


def _enough(counts: list[int]) -> list[int]:
    if sum(counts) == 0:
        raise InvalidInput("the dataset has no rows", field="data")
    if min(counts) == 0:
        raise InvalidInput(
            f"the dataset has {sum(counts)} rows, fewer than the {len(counts)} shards asked "
            "for; lower `shards`",
            field="shards",
        )
    return counts


def split_table(source: Path, targets: list[Path]) -> list[int]:
    """Deal the data rows of `source` round-robin into `targets` (row i goes to shard i mod K).

    Round-robin keeps shards balanced in size and in class mix even when the file is sorted,
    and needs one pass with constant memory.

    Returns:
        The number of data rows written to each target (the shards' sample weights).

    Raises:
        InvalidInput: the file is empty, not UTF-8, or has fewer rows than shards.
    """
    counts = [0] * len(targets)
    handles = [t.open("w", newline="", encoding="utf-8") for t in targets]
    try:
        with source.open(newline="", encoding="utf-8") as fh:
            delimiter = sniff_delimiter([fh.readline() for _ in range(20)])
            fh.seek(0)
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise InvalidInput("the table is empty", field="data")
            writers = [csv.writer(h, delimiter=delimiter) for h in handles]
            for w in writers:
                w.writerow(header)
            for i, row in enumerate(reader):
                if not row:
                    continue
                k = i % len(targets)
                writers[k].writerow(row)
                counts[k] += 1
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the table is not UTF-8 text: {exc}", field="data") from exc
    except csv.Error as exc:
        raise InvalidInput(f"the table is malformed: {exc}", field="data") from exc
    finally:
        for h in handles:
            h.close()
    return _enough(counts)

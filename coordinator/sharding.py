"""Splitting a CSV dataset into shards by rows, streaming, header kept in every shard."""

from __future__ import annotations

import csv
from pathlib import Path

from gridx.coordinator.errors import InvalidInput

csv.field_size_limit(16 << 20)


def split_csv(source: Path, targets: list[Path]) -> list[int]:
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
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise InvalidInput("the CSV dataset is empty", field="data")
            writers = [csv.writer(h) for h in handles]
            for w in writers:
                w.writerow(header)
            for i, row in enumerate(reader):
                if not row:
                    continue
                k = i % len(targets)
                writers[k].writerow(row)
                counts[k] += 1
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the CSV dataset is not UTF-8 text: {exc}", field="data") from exc
    except csv.Error as exc:
        raise InvalidInput(f"the CSV dataset is malformed: {exc}", field="data") from exc
    finally:
        for h in handles:
            h.close()
    if min(counts) == 0:
        raise InvalidInput(
            f"the CSV dataset has {sum(counts)} data rows, fewer than the {len(targets)} shards "
            "asked for; lower `shards`",
            field="shards",
        )
    return counts

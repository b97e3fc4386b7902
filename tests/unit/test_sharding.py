import json
from collections import Counter
from pathlib import Path

import pytest

from gridx.coordinator.errors import InvalidInput
from gridx.coordinator.sharding import sniff_delimiter, split_lines, split_table, splitter
from gridx.schemas.jobs import ByColumn, Dirichlet, Iid, Partition


def _targets(tmp_path: Path, k: int) -> list[Path]:
    return [tmp_path / f"s{i}.csv" for i in range(k)]


def test_rows_are_dealt_round_robin_with_header_in_every_shard(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_text("x,label\n" + "".join(f"{i},{i % 3}\n" for i in range(10)))
    targets = _targets(tmp_path, 3)
    assert split_table(src, targets) == [4, 3, 3]
    lines = [t.read_text().splitlines() for t in targets]
    assert all(ls[0] == "x,label" for ls in lines)
    assert [r.split(",")[0] for r in lines[0][1:]] == ["0", "3", "6", "9"]
    all_rows = sorted(r for ls in lines for r in ls[1:])
    assert all_rows == sorted(f"{i},{i % 3}" for i in range(10))


def test_quoted_newlines_stay_inside_one_row(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_text('text,label\n"line one\nline two",1\nplain,0\n')
    targets = _targets(tmp_path, 2)
    assert split_table(src, targets) == [1, 1]
    assert '"line one\nline two",1' in targets[0].read_text().replace("\r\n", "\n")


def test_fewer_rows_than_shards_names_the_field(tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_text("x\n1\n")
    with pytest.raises(InvalidInput) as err:
        split_table(src, _targets(tmp_path, 2))
    assert err.value.field == "shards"


def test_empty_and_binary_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(InvalidInput):
        split_table(empty, _targets(tmp_path, 1))
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\n\x80\x81\n")
    with pytest.raises(InvalidInput) as err:
        split_table(binary, _targets(tmp_path, 1))
    assert err.value.field == "data"


@pytest.mark.parametrize(
    ("name", "delimiter"), [("d.tsv", ","), ("d.csv", "\t"), ("d.csv", ";"), ("d.psv", "|")]
)
def test_the_delimiter_is_sniffed_whatever_the_file_is_called(
    tmp_path: Path, name: str, delimiter: str
) -> None:
    src = tmp_path / name
    rows = [delimiter.join((str(i), f"name {i}", str(i % 2))) for i in range(9)]
    src.write_text(delimiter.join(("x", "name", "label")) + "\n" + "\n".join(rows) + "\n")
    assert splitter(name) == "table"
    targets = _targets(tmp_path, 3)
    assert split_table(src, targets) == [3, 3, 3]  # not every row in every shard
    got = sorted(r for t in targets for r in t.read_text().splitlines()[1:])
    assert got == sorted(rows)  # every row in exactly one shard, its delimiter kept


def test_a_one_column_table_falls_back_to_commas() -> None:
    assert sniff_delimiter(["label\n", "1\n", "0\n"]) == ","


def test_json_lines_are_dealt_by_line(tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    lines = [f'{{"x": {i}, "text": "a, b; c"}}' for i in range(7)]
    src.write_text("\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:]))  # no final newline
    assert splitter("D.JSONL") == "lines" and splitter("d.bin") is None
    targets = [tmp_path / f"s{i}.jsonl" for i in range(2)]
    assert split_lines(src, targets) == [4, 3]
    assert sorted(r for t in targets for r in t.read_text().splitlines()) == sorted(lines)
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InvalidInput) as err:
        split_lines(empty, targets)
    assert err.value.field == "data"


def _labelled(tmp_path: Path, n: int = 2000, classes: int = 10) -> Path:
    src = tmp_path / "labelled.csv"
    rows = [f"{i},site{i % 7},{(i * 7919) % classes}" for i in range(n)]
    src.write_text("x,site,label\n" + "\n".join(rows) + "\n")
    return src


def _shards(targets: list[Path]) -> list[list[list[str]]]:
    return [[r.split(",") for r in t.read_text().splitlines()[1:]] for t in targets]


@pytest.mark.parametrize(
    "partition",
    [Iid(), ByColumn(column="site"), Dirichlet(column="label", alpha=0.3)],
    ids=["iid", "by_column", "dirichlet"],
)
def test_every_row_lands_in_exactly_one_shard(tmp_path: Path, partition: Partition) -> None:
    src = _labelled(tmp_path)
    targets = _targets(tmp_path, 4)
    counts = split_table(src, targets, partition, seed=3)
    shards = _shards(targets)
    assert counts == [len(s) for s in shards] and min(counts) > 0
    written = sorted(int(r[0]) for s in shards for r in s)
    assert written == list(range(2000))


def test_by_column_never_splits_a_group_and_balances_them(tmp_path: Path) -> None:
    targets = _targets(tmp_path, 3)
    counts = split_table(_labelled(tmp_path), targets, ByColumn(column="site"))
    owners: dict[str, set[int]] = {}
    for s, rows in enumerate(_shards(targets)):
        for r in rows:
            owners.setdefault(r[1], set()).add(s)
    assert len(owners) == 7 and all(len(o) == 1 for o in owners.values())
    assert max(counts) - min(counts) <= 2000 // 7 + 1  # greedy: within one group's size


def _skew(shards: list[list[list[str]]]) -> float:
    """Mean total-variation distance between each shard's label mix and the whole's."""
    everything = Counter(r[2] for s in shards for r in s)
    total = sum(everything.values())
    out = 0.0
    for s in shards:
        mine = Counter(r[2] for r in s)
        out += 0.5 * sum(abs(mine[c] / len(s) - everything[c] / total) for c in everything)
    return out / len(shards)


def test_dirichlet_label_skew_grows_as_alpha_falls(tmp_path: Path) -> None:
    src = _labelled(tmp_path)
    skews = []
    for alpha in (1000.0, 1.0, 0.1):
        targets = _targets(tmp_path, 4)
        split_table(src, targets, Dirichlet(column="label", alpha=alpha), seed=11)
        skews.append(_skew(_shards(targets)))
    assert skews[0] < 0.05 < skews[1] < skews[2], skews  # near-IID, then more and more skewed
    again = _targets(tmp_path, 4)
    split_table(src, again, Dirichlet(column="label", alpha=0.1), seed=11)
    assert _skew(_shards(again)) == skews[2]  # seeded: the same split every time


def test_partition_errors_name_the_field(tmp_path: Path) -> None:
    src = _labelled(tmp_path, n=50)
    with pytest.raises(InvalidInput) as err:
        split_table(src, _targets(tmp_path, 2), ByColumn(column="hospital"))
    assert err.value.field == "partition.column" and "site" in err.value.message
    with pytest.raises(InvalidInput) as err:
        split_table(src, _targets(tmp_path, 8), ByColumn(column="site"))  # 7 sites, 8 shards
    assert err.value.field == "partition.column"
    lines = tmp_path / "d.jsonl"
    lines.write_text('{"label": 1}\n{"x": 2}\n')
    with pytest.raises(InvalidInput) as err:
        split_lines(lines, _targets(tmp_path, 2), ByColumn(column="label"))
    assert err.value.field == "partition.column" and "line 2" in err.value.message


def test_json_lines_split_by_column(tmp_path: Path) -> None:
    lines = tmp_path / "d.jsonl"
    lines.write_text("".join(f'{{"i": {i}, "site": "s{i % 3}"}}\n' for i in range(30)))
    targets = [tmp_path / f"s{i}.jsonl" for i in range(3)]
    assert split_lines(lines, targets, ByColumn(column="site")) == [10, 10, 10]
    for t in targets:
        assert len({json.loads(line)["site"] for line in t.read_text().splitlines()}) == 1

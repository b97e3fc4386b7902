from pathlib import Path

import pytest

from gridx.coordinator.errors import InvalidInput
from gridx.coordinator.sharding import sniff_delimiter, split_lines, split_table, splitter


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

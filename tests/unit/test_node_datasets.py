"""A node's datasets: what it measures and advertises (never the data), the staged copy a task
sees (reordered by column name, readable by the sandbox's user), changes picked up, and the
`gridx-node dataset` commands."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gridx.node import datasets
from gridx.node.datasets import Catalog, data_path, stage
from gridx.node.errors import DatasetError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_tables_json_lines_and_folders_are_measured(tmp_path: Path) -> None:
    state = tmp_path / "state"
    csv_file = _write(tmp_path / "a.csv", 'x,y,label\n1,"two, quoted",0\n3,4,1\n\n')
    tsv_file = _write(tmp_path / "b.tsv", "x\tlabel\n1\t0\n")
    jsonl = _write(tmp_path / "c.jsonl", '{"text": "hi", "label": 1}\n\n{"text": "yo"}\n')
    folder = tmp_path / "images"
    for name in ("a/1.png", "a/2.png", "b/3.png"):
        _write(folder / name, "x")
    got = {
        d.name: (d.format, d.columns, d.rows)
        for d in (
            datasets.add(state, "a", csv_file, "", []),
            datasets.add(state, "b", tsv_file, "", []),
            datasets.add(state, "c", jsonl, "", []),
            datasets.add(state, "d", folder, "scans", ["Bob@Example.org"]),
        )
    }
    assert got == {
        "a": ("csv", ["x", "y", "label"], 2),
        "b": ("tsv", ["x", "label"], 1),
        "c": ("jsonl", ["text", "label"], 2),
        "d": ("folder", [], 3),
    }
    infos = {i.name: i for i in Catalog(state).infos()}
    assert infos["d"].allow_users == ["bob@example.org"] and infos["d"].description == "scans"
    assert "path" not in json.dumps([i.__struct_fields__ for i in infos.values()])
    assert stat.S_IMODE(os.stat(state / datasets.CATALOG).st_mode) == 0o600


def test_bad_names_and_unknown_formats_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a dataset name"):
        datasets.add(tmp_path / "s", "../etc", _write(tmp_path / "a.csv", "x\n1\n"), "", [])
    with pytest.raises(DatasetError, match=r"a dataset is a \.csv"):
        datasets.add(tmp_path / "s", "doc", _write(tmp_path / "a.docx", "x"), "", [])


def test_a_staged_table_is_reordered_by_column_name_and_readable_by_anyone(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    src = _write(tmp_path / "site.csv", "label,b,a\n1,20,10\n0,21,11\n")
    os.chmod(src, 0o600)
    item = datasets.add(state, "clinic", src, "", [])
    folder = stage(state, item, ["a", "b", "label"])
    staged = data_path(folder, item)
    assert staged.read_text() == "a,b,label\n10,20,1\n11,21,0\n"
    assert stat.S_IMODE(staged.stat().st_mode) == 0o444
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stage(state, item, ["a", "b", "label"]) == folder  # made once per version
    with pytest.raises(DatasetError, match="now has columns"):
        stage(state, item, ["a", "c", "label"])


def test_a_change_or_a_removal_is_seen_at_the_next_look(tmp_path: Path) -> None:
    state = tmp_path / "state"
    src = _write(tmp_path / "d.csv", "x,label\n1,0\n")
    datasets.add(state, "d", src, "", [])
    catalog = Catalog(state)
    assert [(i.name, i.rows) for i in catalog.infos()] == [("d", 1)]
    first = stage(state, catalog.current()[0], [])
    _write(src, "x,label\n1,0\n2,1\n3,0\n")
    os.utime(src, ns=(1, 1))  # a different mtime whatever the clock's resolution
    assert [(i.name, i.rows) for i in catalog.infos()] == [("d", 3)]
    second = stage(state, catalog.current()[0], [])
    assert second != first and not first.exists()  # the old copy is gone
    src.unlink()
    assert catalog.infos() == [] and "d" in catalog.problems
    assert datasets.remove(state, "d") and not second.exists()
    assert not datasets.remove(state, "d")


def _node(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridx.node", "dataset", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_dataset_commands(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    src = _write(tmp_path / "d.csv", "x,label\n1,0\n2,1\n")
    added = _node("add", "clinic", str(src), "--allow-user", "a@b.org", "--state-dir", state)
    assert added.returncode == 0, added.stderr
    assert "clinic: csv, 2 rows, columns x, label; usable by a@b.org" in added.stdout
    listed = json.loads(_node("list", "--json", "--state-dir", state).stdout)
    assert [(d["name"], d["rows"], d["path"]) for d in listed] == [("clinic", 2, str(src))]
    bad = _node("add", "x", str(_write(tmp_path / "n.bin", "")), "--state-dir", state)
    assert bad.returncode == 3 and bad.stderr.startswith("Error: ") and bad.stderr[-1] == "\n"
    assert _node("remove", "clinic", "--state-dir", state).returncode == 0
    missing = _node("remove", "clinic", "--state-dir", state)
    assert missing.returncode == 3 and "no dataset 'clinic'" in missing.stderr


def test_a_table_the_coordinator_would_refuse_is_not_offered(tmp_path: Path) -> None:
    wide = _write(tmp_path / "wide.csv", ",".join(f"c{i}" for i in range(2001)) + "\n")
    with pytest.raises(DatasetError, match="cannot be offered"):
        datasets.add(tmp_path / "s", "wide", wide, "", [])
    with pytest.raises(DatasetError, match="cannot be offered"):
        datasets.add(tmp_path / "s", "ok", _write(tmp_path / "ok.csv", "x\n"), "", ["@"])

"""Archives of many files are split by member: every file in exactly one shard of the same
format, weights are file counts, labels (folders) skew under Dirichlet, hostile archives refused."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from gridx.coordinator.archives import archive_kind, label_of, members, split_archive
from gridx.coordinator.errors import InvalidInput
from gridx.schemas.jobs import ByColumn, Dirichlet, Iid

CAP = 1 << 30


def image_folder(n_per_label: dict[str, int]) -> dict[str, bytes]:
    """`label/NNN.png` -> bytes, like an image folder."""
    return {
        f"{label}/{i:03d}.png": f"{label}-{i}".encode() * 10
        for label, n in n_per_label.items()
        for i in range(n)
    }


def write(path: Path, kind: str, files: dict[str, bytes]) -> Path:
    if kind == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("cats/", b"")  # a folder entry: not a member
            for name, data in files.items():
                zf.writestr(name, data)
    else:
        with tarfile.open(path, "w:gz" if kind == "tar.gz" else "w") as tf:
            link = tarfile.TarInfo("cats/link.png")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"  # dropped, never copied
            tf.addfile(link)
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def read(path: Path, kind: str) -> dict[str, bytes]:
    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    with tarfile.open(path, "r:gz" if kind == "tar.gz" else "r:") as tf:
        return {m.name: tf.extractfile(m).read() for m in tf if m.isreg()}  # type: ignore[union-attr]


FORMATS = [
    ("imgs.zip", "zip"),
    ("imgs.tar", "tar"),
    ("imgs.tar.gz", "tar.gz"),
    ("imgs.tgz", "tar.gz"),
]


@pytest.mark.parametrize(("name", "kind"), FORMATS)
def test_every_member_lands_in_exactly_one_shard_of_the_same_format(
    tmp_path: Path, name: str, kind: str
) -> None:
    assert archive_kind(name) == kind
    files = image_folder({"cats": 7, "dogs": 5})
    source = write(tmp_path / name, kind, files)
    targets = [tmp_path / f"s{i}-{name}" for i in range(3)]
    counts = split_archive(source, targets, kind, Iid(), 0, CAP)
    shards = [read(t, kind) for t in targets]
    assert counts == [len(s) for s in shards] == [4, 4, 4]
    merged: dict[str, bytes] = {}
    for s in shards:
        assert not set(s) & set(merged)  # no file in two shards
        merged.update(s)
    assert merged == files  # every file, byte for byte; no folder or link entries


def test_dirichlet_skews_labels_by_folder_as_alpha_falls(tmp_path: Path) -> None:
    files = image_folder({f"class{c}": 40 for c in range(4)})
    source = write(tmp_path / "d.zip", "zip", files)

    def skew(alpha: float) -> float:
        targets = [tmp_path / f"{alpha}-{i}.zip" for i in range(4)]
        split_archive(source, targets, "zip", Dirichlet(column="folder", alpha=alpha), 1, CAP)
        top = [max(Counter(label_of(n) for n in read(t, "zip")).values()) for t in targets]
        return sum(top) / len(files)  # share of files in their shard's main label

    assert skew(0.1) > skew(100.0) + 0.2


def test_by_folder_keeps_each_folder_in_one_shard(tmp_path: Path) -> None:
    files = image_folder({"site-a": 6, "site-b": 5, "site-c": 2, "site-d": 1})
    source = write(tmp_path / "sites.tar", "tar", files)
    targets = [tmp_path / f"{i}.tar" for i in range(2)]
    counts = split_archive(source, targets, "tar", ByColumn(column="folder"), 0, CAP)
    folders = [{label_of(n) for n in read(t, "tar")} for t in targets]
    assert not folders[0] & folders[1] and folders[0] | folders[1] == {f"site-{c}" for c in "abcd"}
    assert sorted(counts) == [7, 7]  # largest folder to the lightest shard


def test_hostile_or_empty_archives_are_refused_with_the_field(tmp_path: Path) -> None:
    targets = [tmp_path / "a.zip", tmp_path / "b.zip"]
    climbing = write(tmp_path / "up.zip", "zip", {"../../etc/cron.d/x": b"boom", "ok/1": b"1"})
    with pytest.raises(InvalidInput, match="outside the archive") as info:
        split_archive(climbing, targets, "zip", Iid(), 0, CAP)
    assert info.value.field == "data"
    empty = write(tmp_path / "empty.zip", "zip", {})
    with pytest.raises(InvalidInput, match="no files"):
        split_archive(empty, targets, "zip", Iid(), 0, CAP)
    bomb = write(tmp_path / "big.tar.gz", "tar.gz", {"a/1": b"\0" * 5000, "a/2": b"\0" * 5000})
    with pytest.raises(InvalidInput, match="unpacks to more than 6000"):
        split_archive(
            bomb, [tmp_path / "c.tar.gz", tmp_path / "d.tar.gz"], "tar.gz", Iid(), 0, 6000
        )
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(InvalidInput, match="cannot be read"):
        split_archive(tmp_path / "junk.zip", targets, "zip", Iid(), 0, CAP)
    fine = write(tmp_path / "fine.zip", "zip", image_folder({"a": 3}))
    with pytest.raises(InvalidInput, match="one column, `folder`") as info:
        split_archive(fine, targets, "zip", ByColumn(column="label"), 0, CAP)
    assert info.value.field == "partition.column"
    with pytest.raises(InvalidInput, match="fewer than the 5 shards"):
        split_archive(fine, [tmp_path / f"{i}.zip" for i in range(5)], "zip", Iid(), 0, CAP)
    assert [n for n, _ in members(fine, "zip", CAP)] == ["a/000.png", "a/001.png", "a/002.png"]

"""Splitting an archive of many files (`.zip`, `.tar`, `.tar.gz`; an image folder, say) into
shards by member: each shard is an archive of the same format holding whole members, and its
weight is its file count.

A member's column, for the partitioners that use one, is `folder`: the folder it sits in
(`cats/001.png` -> `cats`), the image-folder convention for labels. `by_column` on `folder` keeps
each folder in one shard (one site per shard), `dirichlet` on `folder` skews labels across shards,
`iid` deals members round-robin in name order. Only regular files are kept (folders, links and
devices are dropped); a name that is absolute or climbs (`..`) is refused. Nothing is extracted
to disk: members are copied from archive to archive, under a cap on the bytes they unpack to.
"""

from __future__ import annotations

import tarfile
import zipfile
from contextlib import ExitStack
from pathlib import Path, PurePosixPath

from gridx.coordinator.errors import InvalidInput
from gridx.coordinator.sharding import plan
from gridx.schemas.jobs import Iid, Partition

CHUNK = 1 << 20
FOLDER = "folder"
"""The one column an archive's members have."""


def archive_kind(name: str) -> str | None:
    """`zip`, `tar`, `tar.gz`, or None when `name` is not an archive."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    if lower.endswith((".tar.gz", ".tgz")):
        return "tar.gz"
    if lower.endswith(".tar"):
        return "tar"
    return None


def _checked(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise InvalidInput(f"the archive member {name!r} is outside the archive", field="data")
    return name


def label_of(name: str) -> str:
    """The folder a member sits in (its label under the image-folder convention)."""
    return str(PurePosixPath(name).parent)


def _too_big(total: int, cap: int) -> InvalidInput:
    return InvalidInput(
        f"the archive unpacks to more than {cap} bytes (at least {total}); split it or send less",
        field="data",
    )


def members(source: Path, kind: str, max_unpacked: int) -> list[tuple[str, int]]:
    """(name, unpacked size) of the archive's regular files, in name order. A compressed tar is
    read only until its members pass `max_unpacked` bytes.

    Raises:
        InvalidInput: not a readable archive of that kind, a member outside it, or members
            that unpack to more than `max_unpacked` bytes.
    """
    found: list[tuple[str, int]] = []
    total = 0
    try:
        if kind == "zip":
            with zipfile.ZipFile(source) as zf:
                found = [(i.filename, i.file_size) for i in zf.infolist() if not i.is_dir()]
            total = sum(size for _, size in found)
        else:
            with _open_tar(source, kind) as tf:
                for m in tf:
                    if m.isreg():
                        found.append((m.name, m.size))
                        total += m.size
                        if total > max_unpacked:
                            raise _too_big(total, max_unpacked)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"the {kind} archive cannot be read: {exc}", field="data") from exc
    if total > max_unpacked:
        raise _too_big(total, max_unpacked)
    return sorted((_checked(name), size) for name, size in found)


def _copy(src: object, write: object) -> None:
    while chunk := src.read(CHUNK):  # type: ignore[attr-defined]
        write(chunk)  # type: ignore[operator]


def _zip_split(source: Path, targets: list[Path], shard_of: dict[str, int]) -> None:
    with zipfile.ZipFile(source) as zf, ExitStack() as stack:
        outs = [stack.enter_context(zipfile.ZipFile(t, "w", zipfile.ZIP_DEFLATED)) for t in targets]
        for info in zf.infolist():
            s = shard_of.get(info.filename)
            if s is None:
                continue
            with zf.open(info) as src, outs[s].open(info.filename, "w") as dst:
                _copy(src, dst.write)


def _open_tar(path: Path, kind: str, write: bool = False) -> tarfile.TarFile:
    gz = kind == "tar.gz"
    if write:
        return tarfile.open(path, "w:gz") if gz else tarfile.open(path, "w:")
    return tarfile.open(path, "r:gz") if gz else tarfile.open(path, "r:")


def _tar_split(source: Path, targets: list[Path], shard_of: dict[str, int], kind: str) -> None:
    with _open_tar(source, kind) as tf, ExitStack() as stack:
        outs = [stack.enter_context(_open_tar(t, kind, write=True)) for t in targets]
        for member in tf:
            s = shard_of.get(member.name) if member.isreg() else None
            if s is None:
                continue
            clean = tarfile.TarInfo(member.name)
            clean.size, clean.mtime, clean.mode = member.size, member.mtime, 0o644
            outs[s].addfile(clean, tf.extractfile(member))


def split_archive(
    source: Path,
    targets: list[Path],
    kind: str,
    partition: Partition | None = None,
    seed: int = 0,
    max_unpacked: int = 1 << 34,
) -> list[int]:
    """Split an archive's files into `targets` (archives of the same `kind`) by `partition`.

    Returns:
        The number of files in each target (the shards' sample weights).

    Raises:
        InvalidInput: unreadable, empty, a member outside the archive, members that would unpack
            to more than `max_unpacked` bytes, a column other than `folder`, or fewer files
            (folders) than shards.
    """
    partition = partition or Iid()
    column = getattr(partition, "column", None)
    if column is not None and column != FOLDER:
        raise InvalidInput(
            f"partition: an archive's members have one column, `{FOLDER}` (the folder each file "
            f"sits in), not `{column}`",
            field="partition.column",
        )
    found = members(source, kind, max_unpacked)
    if not found:
        raise InvalidInput("the archive holds no files", field="data")
    names = [name for name, _ in found]
    if len(set(names)) != len(names):
        raise InvalidInput("the archive holds two members of the same name", field="data")
    shards = plan([label_of(n) for n in names], len(targets), partition, seed)
    shard_of = dict(zip(names, shards, strict=True))
    try:
        if kind == "zip":
            _zip_split(source, targets, shard_of)
        else:
            _tar_split(source, targets, shard_of, kind)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidInput(f"the {kind} archive cannot be read: {exc}", field="data") from exc
    return [list(shard_of.values()).count(s) for s in range(len(targets))]

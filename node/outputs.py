"""What a task left in its work folder, read as the untrusted input it is.

The node often runs as root, and the task wrote these files: a `model.pth` that is a link to
`/etc/shadow`, a `metrics.json` that is a FIFO (an `open` that never returns) or a link to
`/dev/zero` (a read that never ends) would have the node act with its own rights on the task's
behalf. So every output goes through `open_output`: one component below a folder opened
without following links, opened itself without following links and without blocking, accepted
only as a regular file with one link and at most `cap` bytes, and read from that descriptor
(what the name points to later does not matter). Errors name the file and what it was, never
its bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class UnsafeOutput(Exception):
    """A task's output is not a plain file of its own (a link, a FIFO, a device, a folder, a
    second name of another file) or is over its cap. The message says which and what to do."""

    def __init__(self, message: str, code: str = "unsafe_output") -> None:
        super().__init__(message)
        self.code = code


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def open_output(folder: Path, name: str, cap: int) -> int | None:
    """A read-only descriptor of `folder/name`, a regular file the task wrote; None when there
    is nothing of that name.

    Raises:
        UnsafeOutput: it is anything but a regular file with a single link, or over `cap` bytes.
    """
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"{name!r} is not a single file name")
    dir_fd = os.open(folder, _DIR_FLAGS)
    try:
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:  # ELOOP: the name is a symbolic link
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            what = _kind(st.st_mode)
            raise UnsafeOutput(f"{name} is {what}; write a regular file there") from exc
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeOutput(f"{name} is {_kind(st.st_mode)}; write a regular file there")
        if st.st_nlink != 1:
            raise UnsafeOutput(f"{name} is a second name of another file; write a file of its own")
        if st.st_size > cap:
            raise UnsafeOutput(
                f"{name} is {st.st_size} bytes, over the cap of {cap} bytes", "output_too_large"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_output(folder: Path, name: str, cap: int) -> bytes | None:
    """The bytes of a small output (metrics); None when absent.

    Raises:
        UnsafeOutput: as `open_output`, or it grew past `cap` while being read.
    """
    fd = open_output(folder, name, cap)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise UnsafeOutput(f"{name} grew past the cap of {cap} bytes", "output_too_large")
    return data


def copy_output(folder: Path, name: str, cap: int, dest: Path) -> tuple[int, str] | None:
    """Copy an output (the model) to `dest`, a file of the node's that no task can reach, so
    that what is uploaded is exactly what was checked; None when absent.

    Returns:
        (its size, its sha256).

    Raises:
        UnsafeOutput: as `open_output`, or it grew past `cap` while being copied.
    """
    fd = open_output(folder, name, cap)
    if fd is None:
        return None
    digest, size = hashlib.sha256(), 0
    out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "rb") as src, os.fdopen(out, "wb") as dst:
        while chunk := src.read(CHUNK):
            size += len(chunk)
            if size > cap:
                break
            digest.update(chunk)
            dst.write(chunk)
    if size > cap:
        dest.unlink(missing_ok=True)
        raise UnsafeOutput(f"{name} grew past the cap of {cap} bytes", "output_too_large")
    return size, digest.hexdigest()

"""Unpacking a job's project (its code as a zip of a folder) into a task's work folder.

The archive is untrusted and the node unpacks it with its own rights, so it makes only plain
folders and regular files, from names that stay inside the (fresh, node-made) work folder,
never a link, never over an existing file, and stops at a cap on the files and the bytes.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath

from gridx.node.errors import NodeError
from gridx.schemas.projects import MAX_FILES, member_problem

CHUNK = 1 << 20


class ProjectError(NodeError):
    """The job's project archive cannot be unpacked as it is."""


def unpack(archive: Path, dest: Path, max_bytes: int) -> int:
    """Unpack `archive` into `dest`; how many files it held.

    Raises:
        ProjectError: not a zip, too many files or bytes, or a member outside the project.
    """
    written = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_FILES:
                raise ProjectError(f"the project holds {len(infos)} files, over {MAX_FILES}")
            files = 0
            for info in infos:
                problem = member_problem(info.filename.rstrip("/"))
                if problem is not None:
                    raise ProjectError(f"project member {problem}")
                target = dest.joinpath(*PurePosixPath(info.filename).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                with zf.open(info) as src, os.fdopen(os.open(target, flags, 0o644), "wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ProjectError(f"the project unpacks to over {max_bytes} bytes")
                        out.write(chunk)
                files += 1
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ProjectError(f"the project archive cannot be unpacked: {exc}") from exc
    return files

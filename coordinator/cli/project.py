"""Packing a folder as a job's project: its files in one zip, in name order with fixed times
(the same folder gives the same archive, so the store keeps it once), without what a project
never needs to carry (`DEFAULT_IGNORE`, plus the patterns of its `.gridxignore`), without
links, and without the data file the job sends anyway."""

from __future__ import annotations

import ast
import fnmatch
import os
import tempfile
import zipfile
from pathlib import Path

import click

from gridx.schemas.projects import MAX_FILES

IGNORE_FILE = ".gridxignore"
DEFAULT_IGNORE = (
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    "*.pyc",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "*.egg-info",
    ".DS_Store",
    "node_modules",
    IGNORE_FILE,
)
FIXED_TIME = (2020, 1, 1, 0, 0, 0)


def _patterns(folder: Path) -> list[str]:
    ignore = folder / IGNORE_FILE
    own = ignore.read_text().splitlines() if ignore.is_file() else []
    return [*DEFAULT_IGNORE, *(p.strip().strip("/") for p in own if p.strip() and p[0] != "#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    return any(
        fnmatch.fnmatch(rel, p) or any(fnmatch.fnmatch(part, p) for part in parts) for p in patterns
    )


def project_files(folder: Path, leave_out: tuple[Path, ...] = ()) -> list[str]:
    """The files a project of `folder` carries, relative, in name order."""
    patterns = _patterns(folder)
    skip = {p.resolve() for p in leave_out}
    found = []
    for root, dirs, files in os.walk(folder):  # (links to folders are not followed)
        base = Path(root)
        dirs[:] = sorted(d for d in dirs if not _ignored(_rel(base / d, folder), patterns))
        for name in files:
            path = base / name
            rel = _rel(path, folder)
            if path.is_symlink() or _ignored(rel, patterns) or path.resolve() in skip:
                continue
            found.append(rel)
    return sorted(found)


def _rel(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def pack(folder: Path, entry: str, leave_out: tuple[Path, ...] = ()) -> Path:
    """A temporary zip of the project in `folder` (the caller deletes it).

    Raises:
        click.UsageError: the entry point is missing, or the folder holds too many files.
    """
    if not (folder / entry).is_file():
        raise click.UsageError(
            f"{folder} has no {entry} at its top level; name the script with --entry"
        )
    files = project_files(folder, leave_out)
    if len(files) > MAX_FILES:
        raise click.UsageError(
            f"{folder} holds {len(files)} files, over {MAX_FILES}; list what the job does not "
            f"need in {folder / IGNORE_FILE} (one pattern a line, as in .gitignore)"
        )
    fd, name = tempfile.mkstemp(prefix="gridx-project-", suffix=".zip")
    with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            info = zipfile.ZipInfo(rel, FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (folder / rel).read_bytes())
    return Path(name)


def sibling_imports(script: Path) -> list[str]:
    """Modules `script` imports that sit beside it (`model.py`, `utils/`): a lone script sent
    without them fails on every node with ModuleNotFoundError."""
    try:
        tree = ast.parse(script.read_bytes(), str(script))
    except (SyntaxError, ValueError, RecursionError):
        return []  # the coordinator says what is wrong with it
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    here = script.parent
    return sorted(
        n for n in names if (here / f"{n}.py").is_file() or (here / n / "__init__.py").is_file()
    )

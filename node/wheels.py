"""What a job's requirements will download, how big it is, and how much has arrived.

Preparing a task's environment can take minutes (a first torch is gigabytes): the node shows it
as its own phase, "downloading 2 packages: 1.2 GB / 3.0 GB", in its log, on its status page and,
through the heartbeat, on the dashboard. pip plans the install first (`--dry-run --report`,
wheels only: it reads metadata, builds nothing), the sizes come from the index (a HEAD request,
or the file itself for a local index), and the bytes that arrived are those in pip's temporary
folder, which each install gets to itself.

The big frameworks a node already has are pinned (`constraints`): a job that names `torch`
uses the node's torch, and one that asks for another version is told so rather than handed a
second multi-gigabyte copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from gridx.schemas.requirements import FRAMEWORKS
from gridx.schemas.sizes import human

Progress = Callable[[str], None]
"""Told what preparing is doing now, in words for people."""


def quiet(_: str) -> None:
    """Progress nobody listens to."""


PINNED = FRAMEWORKS
"""Frameworks a node never downloads a second copy of: a job gets the node's own version."""
PINS_SCRIPT = (
    "import importlib.metadata as m\n"
    f"for n in {PINNED!r}:\n"
    "    try: print(n + '==' + m.version(n))\n"
    "    except m.PackageNotFoundError: pass\n"
)


@dataclass(frozen=True)
class Wheel:
    """One wheel pip will install."""

    name: str
    version: str
    url: str
    size: int | None = None
    """Bytes, where the index said (None: unknown)."""

    @property
    def pin(self) -> str:
        """`name==version`."""
        return f"{self.name}=={self.version}"


def folder_size(folder: Path) -> int:
    """Bytes of the files under `folder` (files vanishing meanwhile are skipped)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def constraints(pins: list[str], folder: Path) -> Path:
    """A pip constraints file holding `pins`, written in `folder`."""
    path = folder / "constraints.txt"
    path.write_text("".join(f"{p}\n" for p in pins))
    return path


def parse_report(report: bytes) -> list[Wheel]:
    """The wheels of a pip installation report (`pip install --dry-run --report`)."""
    items = json.loads(report).get("install", [])
    return [
        Wheel(i["metadata"]["name"], i["metadata"]["version"], i["download_info"]["url"])
        for i in items
    ]


async def size_of(session: aiohttp.ClientSession, url: str) -> int | None:
    """The size of a wheel at `url` (a HEAD request; a local index's file is looked at)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        with contextlib.suppress(OSError):
            return Path(unquote(parts.path)).stat().st_size
        return None
    try:
        async with session.head(url, allow_redirects=True) as resp:
            return resp.content_length if resp.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def with_sizes(wheels: list[Wheel]) -> list[Wheel]:
    """`wheels` with their sizes filled in where the index tells them."""
    if not wheels:
        return wheels
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        sizes = await asyncio.gather(*(size_of(session, w.url) for w in wheels))
    return [Wheel(w.name, w.version, w.url, s) for w, s in zip(wheels, sizes, strict=True)]


def describe(wheels: list[Wheel]) -> str:
    """'3 packages (torch 2.13.0, numpy 2.1.0, ...)'."""
    names = ", ".join(f"{w.name} {w.version}" for w in wheels[:3])
    more = ", ..." if len(wheels) > 3 else ""
    return f"{len(wheels)} package{'s' * (len(wheels) != 1)} ({names}{more})"


@contextlib.contextmanager
def pip_tmp(parent: Path) -> Iterator[Path]:
    """A temporary folder of pip's own (its downloads land there while they arrive)."""
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix="pip-") as tmp:
        yield Path(tmp)


async def watch(
    work: asyncio.Future[tuple[int, str]],
    wheels: list[Wheel],
    folders: list[Path],
    progress: Progress,
    every_s: float = 1.0,
) -> tuple[int, str]:
    """Await a pip run, telling `progress` every `every_s` how many of the planned bytes have
    arrived in `folders`."""
    total = sum(w.size or 0 for w in wheels)
    what = describe(wheels)
    while True:
        got = sum(folder_size(f) for f in folders)
        if total and got >= total:  # pip is still checking what arrived; installing comes after
            progress(f"downloading {what}: all {human(total)} arrived, checking")
        elif total:
            progress(f"downloading {what}: {human(got)} / {human(total)}")
        else:
            progress(f"downloading {what}: {human(got)}")
        done, _ = await asyncio.wait({work}, timeout=every_s)
        if done:
            return work.result()

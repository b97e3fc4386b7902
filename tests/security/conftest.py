"""A host to attack: a coordinator and one node per executor mode, with secrets lying around.

The cluster lives in a world-traversable folder (not pytest's 0700 tmp), next to a root-owned
0600 secret and a world-writable drop folder, so that only the sandbox and ordinary file
permissions stand between a task and them, as on a volunteer's machine.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import FAST, REPO, Client

USER = "gridx-sec-user"
NODE_DEPS = ("aiohttp", "click", "msgspec", "docker", "packaging", "pip")  # pip: requirements


@dataclass
class Host:
    """What lies on the host for a task to go after."""

    root: Path
    secret: Path
    """A root-owned 0600 file outside every Grid-X folder."""
    drop: Path
    """A world-writable folder (mode 1777): only the sandbox keeps a task out of it."""
    marker: str
    """A name no honest process uses: hostile jobs leave it on files and daemons."""


@pytest.fixture
def host() -> Iterator[Host]:
    root = Path(tempfile.mkdtemp(prefix="gridx-sec-", dir="/var/tmp"))
    os.chmod(root, 0o755)
    secret = root / "secret"
    secret.write_text("the host's secret")
    os.chmod(secret, 0o600)
    drop = root / "drop"
    drop.mkdir()
    os.chmod(drop, 0o1777)
    try:
        yield Host(root, secret, drop, f"gridx-hostile-{secrets.token_hex(6)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(host: Host) -> Iterator[LocalCluster]:
    c = LocalCluster(host.root / "cluster", coordinator_env=FAST)
    c.start()
    os.chmod(c.root, 0o755)  # only the data dir's own mode (and the sandbox) protect it
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def client(cluster: LocalCluster) -> Client:
    return Client(cluster)


def _closure(names: tuple[str, ...]) -> list[md.Distribution]:
    """The installed distributions `names` need, with their dependencies."""
    seen: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        dist = md.distribution(name)
        seen[name] = dist
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def node_env_for(user: str, folder: Path) -> Path:
    """An interpreter `user` can run with the node installed: a virtualenv of the system's
    Python 3 with the node, its dependencies and the schemas copied in (offline, no pip).
    The test environment's own may live under a folder only root can enter."""
    venv = folder / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [
                str(venv / "bin/python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for dist in _closure(NODE_DEPS):
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f)))
            if ".." in f.parts or not src.is_file():
                continue
            (site / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, site / f)
    for pkg in ("node", "schemas"):
        shutil.copytree(
            REPO / pkg, site / "gridx" / pkg, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(["chmod", "-R", "a+rX", str(folder)], check=True)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def ordinary_user() -> Iterator[pwd.struct_passwd]:
    """An unprivileged account for the node (created once; removed at the end)."""
    try:
        pw = pwd.getpwnam(USER)
        created = False
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
            check=True,
        )
        pw = pwd.getpwnam(USER)
        created = True
    yield pw
    if created:
        subprocess.run(["userdel", USER], check=False)


def as_user(pw: pwd.struct_passwd, python: Path) -> tuple[str, ...]:
    """The launcher that runs `python` as that user (no groups, no capabilities)."""
    return (
        "setpriv",
        f"--reuid={pw.pw_uid}",
        f"--regid={pw.pw_gid}",
        "--clear-groups",
        "--inh-caps=-all",
        str(python),
    )


__all__ = ["Host", "as_user", "node_env_for"]

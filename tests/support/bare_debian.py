"""A stock Debian machine for the newcomer's tests: debootstrap's minbase with only what the README
asks of a fresh machine (python3, python3-venv, git: no pip outside a venv, no bubblewrap, no
Docker), entered with chroot in a mount namespace of its own (every mount it makes goes with it).

The rootfs is built once per checkout (about a minute) and kept as a tarball under `build/`; each
test unpacks a fresh copy. It gets this machine's pip settings (`pip config list`, with the local
folders they name bound in read-only), so packages come from where they come from here.
"""

from __future__ import annotations

import configparser
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = "python3,python3-venv,git,ca-certificates"
SUITE = "bookworm"
CACHE = REPO / "build" / "bare-debian" / f"{SUITE}-{PACKAGES.replace(',', '-')}.tar"
USER = "newcomer"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def mirror() -> str:
    """The Debian mirror this machine's apt uses (read at run time, never written down)."""
    for source in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if source.exists():
            found = re.search(r"(?:URIs:|^deb)\s+(\S+)", source.read_text(), re.M)
            if found:
                return found.group(1)
    return "http://deb.debian.org/debian"


def _tarball() -> Path:
    if not CACHE.exists():
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        root = CACHE.parent / "rootfs.tmp"
        subprocess.run(["rm", "-rf", str(root)], check=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(root),
             mirror()],
            check=True, capture_output=True,
        )  # fmt: skip
        subprocess.run(["tar", "-C", str(root), "-cf", f"{CACHE}.part", "."], check=True)
        os.replace(f"{CACHE}.part", CACHE)
        subprocess.run(["rm", "-rf", str(root)], check=True)
    return CACHE


def _pip_settings() -> tuple[str, list[str]]:
    """This machine's pip settings as one pip.conf, and the local paths they name."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    conf = configparser.ConfigParser()
    conf["global"] = {}
    paths: list[str] = []
    for row in out.splitlines():
        key, _, value = row.partition("=")
        name = key.rsplit(".", 1)[-1]
        value = value.strip().strip("'\"")
        conf["global"][name] = value
        for token in value.split():
            token = token.removeprefix("file://")
            if token.startswith("/") and os.path.exists(token):
                # an index's pages link to files beside its `simple/`: the index's whole folder
                paths.append(os.path.dirname(token) if token.endswith("/simple") else token)
    text = io.StringIO()
    conf.write(text)
    return text.getvalue(), paths


class BareDebian:
    """A fresh rootfs under `root`, with a user `newcomer` and a copy of this checkout in the
    home of root and of that user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(root), "-xf", str(_tarball())], check=True)
        settings, paths = _pip_settings()
        (root / "etc" / "pip.conf").write_text(settings)
        self.binds = sorted({p for p in paths if os.path.isdir(p)})
        for path in {p for p in paths if not os.path.isdir(p)}:  # a CA bundle, constraints
            inside = root / path.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            inside.unlink(missing_ok=True)  # (a link in the rootfs would lead out of it)
            shutil.copyfile(path, inside)
        subprocess.run(["chroot", str(root), "useradd", "-m", USER], check=True)
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        listing = "\0".join(f for f in files if f and (REPO / f).exists()).encode()
        for home, owner in ((root / "root", "root"), (root / "home" / USER, USER)):
            _copy(listing, home / "gridx")
            inside = f"/{home.relative_to(root)}/gridx"
            subprocess.run(["chroot", str(root), "chown", "-R", f"{owner}:", inside], check=True)

    def run(
        self, command: str, user: str = "root", timeout: float = 1500
    ) -> subprocess.CompletedProcess[str]:
        """`command` in the checkout's copy of `user`'s home, with a login-like environment
        (nothing of this machine's own environment goes in)."""
        home = "/root" if user == "root" else f"/home/{user}"
        mounts = [
            f"mount -t proc proc {self.root}/proc",
            f"mount --rbind /dev {self.root}/dev",
            f"mount -t sysfs sys {self.root}/sys",
            f"mount -t tmpfs -o mode=1777 tmp {self.root}/tmp",
        ]
        for path in self.binds:  # the package folders pip's settings name, read-only
            inside = shlex.quote(f"{self.root}{path}")
            mounts += [f"mkdir -p {inside}", f"mount --bind -o ro {shlex.quote(path)} {inside}"]
        userspec = [] if user == "root" else [f"--userspec={user}:{user}"]
        enter = shlex.join([
            "chroot", *userspec, str(self.root), "/usr/bin/env", "-i", f"HOME={home}",
            f"PATH={PATH}", "LANG=C.UTF-8", f"USER={user}", "/bin/sh", "-c",
            f"cd {home}/gridx && {command}",
        ])  # fmt: skip
        script = " && ".join([*mounts, enter])
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def _copy(listing: bytes, dest: Path) -> None:
    """The checkout's tracked and untracked (not ignored) files into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    pack = subprocess.Popen(
        ["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    unpack = subprocess.Popen(["tar", "-C", str(dest), "-xf", "-"], stdin=pack.stdout)
    assert pack.stdin is not None and pack.stdout is not None
    pack.stdin.write(listing)
    pack.stdin.close()
    pack.stdout.close()
    if unpack.wait() or pack.wait():
        raise RuntimeError(f"could not copy the checkout into {dest}")

"""The strongest process isolation this host offers: bubblewrap, else `unshare -n`, else none."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

ISOLATIONS = ("bubblewrap", "unshare", "none")


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _unshare_flags() -> list[str]:
    # root can make a network namespace directly; others need a user namespace too
    return ["-n"] if os.geteuid() == 0 else ["-r", "-n"]


@functools.cache
def detect() -> str:
    """Which isolation works here, probed once: 'bubblewrap', 'unshare' or 'none'."""
    if shutil.which("bwrap") and _works(
        ["bwrap", "--unshare-net", "--unshare-user", "--ro-bind", "/", "/", "--dev", "/dev", "true"]
    ):
        return "bubblewrap"
    if shutil.which("unshare") and _works(["unshare", *_unshare_flags(), "true"]):
        return "unshare"
    return "none"


@functools.cache
def interpreter_paths(python: str) -> tuple[Path, ...]:
    """The folders an interpreter needs to run: its prefix (a virtualenv) and its base prefix.

    The sandbox replaces /tmp with an empty tmpfs, so an interpreter that lives under /tmp (a
    clone in a temp folder) must be shown again, read-only.
    """
    out = subprocess.run(
        [python, "-c", "import sys; print(sys.prefix); print(sys.base_prefix)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return tuple(dict.fromkeys(Path(p).resolve() for p in out.stdout.split()))


def wrap(
    command: list[str],
    workdir: Path,
    isolation: str,
    hidden: list[Path],
    readonly: list[Path] | None = None,
    devices: list[str] | None = None,
) -> list[str]:
    """The command line that runs `command` in `workdir` under `isolation`.

    Args:
        hidden: folders the task must not see (the node's state folder, with its token).
        readonly: folders to show again read-only after /tmp and `hidden` are blanked (the
            interpreter, the job's environment).
        devices: device nodes to pass through (the GPUs of a job that asked for one).

    bubblewrap: no network (not even the host's loopback), read-only host, private /tmp and
    /dev, new PID/IPC/UTS/user namespaces, uid 65534, every capability dropped, the work folder
    the only writable place, the node's state folder replaced by an empty tmpfs.
    """
    if isolation == "bubblewrap":
        args = [
            "bwrap",
            "--die-with-parent",
            "--new-session",
            "--unshare-net",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-user",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ]
        for folder in hidden:
            args += ["--tmpfs", str(folder)]
        for folder in readonly or []:
            args += ["--ro-bind", str(folder), str(folder)]
        for dev in devices or []:
            args += ["--dev-bind", dev, dev]
        args += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir), "--"]
        return args + command
    if isolation == "unshare":
        return ["unshare", *_unshare_flags(), "--", *command]
    return command

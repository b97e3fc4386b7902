"""The process sandbox: what a task sees, which uid it runs as, and how it is wrapped.

Mechanisms, strongest first:
- `bubblewrap`: new mount, PID, network, IPC and UTS namespaces; a filesystem built from
  nothing (deny by default: `SYSTEM_PATHS` below, the interpreter, the job's environment, read-only,
  and the task's work folder read-write); no network at all, not even the host's loopback.
  A root node runs bubblewrap itself and drops the task to the dedicated unprivileged host uid
  (`gridx-task`, else `nobody`) with `setpriv` (no capabilities, no-new-privs), so the host's
  file permissions hold even if a namespace were escaped. A node of an ordinary user maps the
  task to uid 65534 inside a user namespace, which is that user outside (never root).
- `unshare`: PID and network namespaces (and the unprivileged uid for a root node), but the
  host's filesystem as that uid sees it. Only used when the owner accepts a weak sandbox.
- `none`: rlimits and timeouts only (a root node still drops the task to its uid).
- `off`: chosen, never detected: `none` without the uid drop, the task runs as the node's own
  user. For one's own code on one's own machine (`gridx demo` where nothing stronger works);
  the self-test reports every gap and the node still needs `--allow-weak-sandbox`.

What any of them really holds is measured at start-up by `selftest.py`, not assumed.
"""

from __future__ import annotations

import functools
import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TASK_USER = "gridx-task"
"""The host account tasks of a root node run as (created by the worker bundle's setup)."""
NOBODY = 65534

# Everything the sandbox shows from the host, read-only, besides the interpreter's prefixes and
# the job's environment: system programs and libraries, and the few /etc files that the dynamic
# loader and Python read. Nothing else of the host exists inside: no /home, /root, /var, /srv,
# /etc/shadow, other tasks' folders, a coordinator's data or the node's state.
SYSTEM_PATHS = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/python3*",
)
# Written by the node (state/sandbox/etc) and shown as /etc/<name>: a passwd and group that name
# only root and the task's user, and a hosts file for localhost.
SYNTHETIC_ETC = ("passwd", "group", "hosts", "nsswitch.conf")


@dataclass(frozen=True)
class TaskUser:
    """The host uid/gid a task runs as (None: the node's own, as for a non-root node)."""

    uid: int | None
    gid: int | None

    @property
    def switches(self) -> bool:
        """True when the node drops the task to another host uid (the node runs as root)."""
        return self.uid is not None


@functools.cache
def task_user() -> TaskUser:
    """`gridx-task` when it exists, else `nobody`, for a root node; the node's own otherwise."""
    if os.geteuid() != 0:
        return TaskUser(None, None)
    try:
        pw = pwd.getpwnam(TASK_USER)
        return TaskUser(pw.pw_uid, pw.pw_gid)
    except KeyError:
        return TaskUser(NOBODY, NOBODY)


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _drop(user: TaskUser) -> list[str]:
    """setpriv to the task's host uid: no groups, no capabilities at all, no-new-privs."""
    if not user.switches:
        return []
    return [
        shutil.which("setpriv") or "/usr/bin/setpriv",
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]


def _unshare_flags() -> list[str]:
    # PID namespace with its own /proc (every process of the task dies with it) and no network;
    # a non-root node needs a user namespace to make them.
    flags = ["--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    return flags if os.geteuid() == 0 else ["--map-root-user", *flags]


@functools.cache
def detect() -> str:
    """Which mechanism works here, probed once: 'bubblewrap', 'unshare' or 'none'."""
    drop = _drop(task_user())
    if drop and not shutil.which("setpriv"):
        drop = ["/nonexistent-setpriv"]  # a root node without setpriv cannot drop root
    if shutil.which("bwrap") and _works([*_bwrap_base(64), "--", *drop, "/usr/bin/true"]):
        return "bubblewrap"
    if shutil.which("unshare") and _works(["unshare", *_unshare_flags(), "--", *drop, "true"]):
        return "unshare"
    return "none"


@functools.cache
def interpreter_paths(python: str) -> tuple[Path, ...]:
    """The folders an interpreter needs to run: its prefix (a virtualenv), its base prefix, and
    any folder on its import path outside them (a `.pth` naming another site-packages)."""
    code = "import sys; print(sys.prefix); print(sys.base_prefix); print(*sys.path, sep=chr(10))"
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=30, check=True, cwd="/"
    )
    paths: list[Path] = []
    for line in out.stdout.splitlines():
        path = Path(line).resolve() if line.strip() else None
        if path is None or not path.is_dir() or path == Path("/"):
            continue
        if not any(path == p or p in path.parents for p in paths):
            paths.append(path)
    return tuple(paths)


def write_synthetic_etc(folder: Path) -> Path:
    """The /etc files the sandbox shows instead of the host's (see SYNTHETIC_ETC)."""
    user = task_user()
    uid = user.uid if user.uid is not None else NOBODY
    gid = user.gid if user.gid is not None else NOBODY
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "passwd": f"root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"task:x:{uid}:{gid}:grid-x task:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\ntask:x:{gid}:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
        os.chmod(folder / name, 0o644)
    return folder


def system_paths() -> list[tuple[str, str | None]]:
    """The host's SYSTEM_PATHS that exist here: (path, symlink target or None)."""
    found: list[tuple[str, str | None]] = []
    for pattern in SYSTEM_PATHS:
        for path in sorted(glob.glob(pattern)) if "*" in pattern else [pattern]:
            if os.path.islink(path) and os.path.dirname(path) == "/":
                found.append((path, os.readlink(path)))  # merged /usr: /bin -> usr/bin
            elif os.path.exists(path):
                found.append((path, None))
    return found


def shm_bytes(memory_mb: int) -> int:
    """The size of a task's private /dev/shm: half its memory cap (what it holds there is
    memory, counted against the cap by the cgroup where there is one, and capped here too)."""
    return max(16, memory_mb // 2) << 20


def _bwrap_base(memory_mb: int) -> list[str]:
    user = task_user()
    args = [
        "bwrap",
        "--die-with-parent",
        "--new-session",
        "--unshare-net",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "gridx-task",
    ]
    if not user.switches:  # a user namespace: uid 65534 inside is the node's user outside
        args += ["--unshare-user", "--uid", str(NOBODY), "--gid", str(NOBODY), "--cap-drop", "ALL"]
    args += ["--perms", "0755", "--dir", "/etc"]  # listable, holding only what is bound below
    for path, link in system_paths():
        args += ["--symlink", link, path] if link else ["--ro-bind", path, path]
    # a private /tmp the task's user can write (tempfile needs one: torch._dynamo's import does)
    args += ["--dev", "/dev", "--proc", "/proc", "--perms", "01777", "--tmpfs", "/tmp"]
    # and a private, size-capped /dev/shm it can write: multiprocessing's locks and queues,
    # shared_memory and DataLoader workers live there (bubblewrap's own is root's 0755)
    return [*args, "--perms", "01777", "--size", str(shm_bytes(memory_mb)), "--tmpfs", "/dev/shm"]


def _bind(args: list[str], made: set[str], flag: str, path: Path) -> None:
    """Bind `path` at the same place, first making its missing parents traversable (bubblewrap
    would otherwise copy the host's modes: a 0700 /root would hide an interpreter under it)."""
    for parent in reversed(path.parents):
        p = str(parent)
        if p in made or p == "/":
            continue
        made.add(p)
        if not any(p == s or p.startswith(s + "/") for s, _ in system_paths()):
            args += ["--perms", "0755", "--dir", p]
    args += [flag, str(path), str(path)]
    made.add(str(path))


def wrap(
    command: list[str],
    workdir: Path,
    isolation: str,
    readonly: list[Path],
    etc: Path | None = None,
    devices: list[str] | None = None,
    memory_mb: int = 256,
) -> list[str]:
    """The command line that runs `command` in `workdir` (the one folder it may write: a task's,
    or an environment being built) under `isolation`.

    Args:
        readonly: folders shown read-only (the interpreter's prefixes, the job's environment).
        etc: the folder of synthetic /etc files (`write_synthetic_etc`).
        devices: device nodes to pass through (the GPUs of a job that asked for one).
        memory_mb: the task's memory cap (its private /dev/shm is half of it).
    """
    if isolation == "off":
        return command
    drop = _drop(task_user())
    if isolation == "bubblewrap":
        args = _bwrap_base(memory_mb)
        made: set[str] = set()
        if etc is not None:
            for name in SYNTHETIC_ETC:
                args += ["--ro-bind", str(etc / name), f"/etc/{name}"]
        for folder in dict.fromkeys(readonly):
            _bind(args, made, "--ro-bind", folder)
        for dev in devices or []:
            args += ["--dev-bind", dev, dev]
        _bind(args, made, "--bind", workdir)
        return [*args, "--chdir", str(workdir), "--", *drop, *command]
    if isolation == "unshare":
        return ["unshare", *_unshare_flags(), "--", *drop, *command]
    return [*drop, *command]

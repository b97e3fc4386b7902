"""Control groups for tasks: a process cap, a memory cap, and a kill that reaches every process.

Two layouts, detected at start-up:
- v1 (one hierarchy per controller, `/sys/fs/cgroup/pids`, `.../memory`): a root node makes
  `gridx/<task>` under each and writes `pids.max` and `memory.limit_in_bytes`.
- v2 (unified, `/sys/fs/cgroup/cgroup.controllers`): the node needs a subtree it may write (root,
  or a systemd unit / `systemd-run --user --scope -p Delegate=yes`). It moves itself into a
  `node` leaf (a v2 group with children may hold no processes), enables `pids` and `memory` for
  its children, and makes one group per task next to it with `pids.max` and `memory.max`;
  `cgroup.kill` ends the group.
Where neither can be written (an ordinary user without delegation) the node falls back to
rlimits; the self-test reports what holds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PIDS_MAX = 256


class TaskGroup:
    """The cgroup(s) of one task."""

    def __init__(self, paths: list[Path], v2: bool) -> None:
        self.paths = paths
        self.v2 = v2

    def join(self) -> None:
        """Move the calling process in (runs in the child, before exec)."""
        pid = str(os.getpid())
        for path in self.paths:
            (path / "cgroup.procs").write_text(pid)

    def pids(self) -> set[int]:
        """The live processes in the group now (zombies wait for a reaper, not for us)."""
        found: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(OSError):
                found |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
        return {pid for pid in found if not _zombie(pid)}

    def memory_mb(self) -> tuple[int, int] | None:
        """(now, peak) memory of the group's processes in MiB, as the kernel charges it (page
        cache included; v2's `memory.current`/`memory.peak`, v1's usage/max_usage), or None
        where the kernel does not say (v2 before Linux 5.19 has no peak)."""
        names = (
            ("memory.current", "memory.peak")
            if self.v2
            else ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
        )
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                now, peak = (int((path / n).read_text()) >> 20 for n in names)
                return now, peak
        return None

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer took a process of the group (read before `kill`,
        which removes it): `oom_kill` in v2's `memory.events`, v1's `memory.oom_control`."""
        for path in self.paths:
            for name in ("memory.events", "memory.oom_control"):
                with contextlib.suppress(OSError, ValueError):
                    for line in (path / name).read_text().splitlines():
                        key, _, value = line.partition(" ")
                        if key == "oom_kill" and int(value) > 0:
                            return True
        return False

    def kill(self) -> None:
        """SIGKILL every process in the group (repeat until none is left), then remove it."""
        if self.v2:
            with contextlib.suppress(OSError):
                (self.paths[0] / "cgroup.kill").write_text("1")
        deadline = time.monotonic() + 5
        while (left := self.pids()) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        for path in self.paths:
            with contextlib.suppress(OSError):
                path.rmdir()


class Cgroups:
    """Makes task groups under this node's part of the hierarchy."""

    def __init__(self, parents: list[Path], v2: bool) -> None:
        self.parents = parents
        self.v2 = v2

    def create(self, name: str, memory_bytes: int, pids_max: int = PIDS_MAX) -> TaskGroup:
        """A fresh group for a task, capped at `pids_max` processes and `memory_bytes`."""
        paths = []
        for parent in self.parents:
            path = parent / name
            if path.exists():  # left by a crash: empty it first
                TaskGroup([path], self.v2).kill()
            path.mkdir(exist_ok=True)
            paths.append(path)
        for path in paths:
            _limit(path, "pids.max", str(pids_max))
            if self.v2:
                _limit(path, "memory.max", str(memory_bytes))
                _limit(path, "memory.swap.max", "0")
            else:
                _limit(path, "memory.limit_in_bytes", str(memory_bytes))
                _limit(path, "memory.memsw.limit_in_bytes", str(memory_bytes))
        return TaskGroup(paths, self.v2)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # gone
    return stat[stat.rindex(")") + 2 :].startswith("Z")


def _limit(path: Path, name: str, value: str) -> None:
    with contextlib.suppress(OSError):  # a control this kernel lacks (memsw without swap)
        (path / name).write_text(value)


def _own_v2_group(root: Path) -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return root / line[3:].lstrip("/")
    return None


def setup_v2(root: Path, own: Path, node_id: str) -> Cgroups | None:
    """Delegate `own` (the node's cgroup): the node moves into `own/node`, tasks go next to it
    in `own/tasks-<node>`, with pids and memory enabled for them."""
    try:
        leaf = own / "node"
        leaf.mkdir(exist_ok=True)
        for pid in (own / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # threads of another process, gone already
                (leaf / "cgroup.procs").write_text(pid)
        (own / "cgroup.subtree_control").write_text("+pids +memory")
        tasks = own / f"tasks-{node_id or 'node'}"
        tasks.mkdir(exist_ok=True)
        (tasks / "cgroup.subtree_control").write_text("+pids +memory")
    except OSError:
        return None
    return Cgroups([tasks], v2=True)


def setup_v1(root: Path, node_id: str) -> Cgroups | None:
    """A `gridx/<node>` group under the pids and memory hierarchies (root only)."""
    parents = []
    try:
        for controller in ("pids", "memory"):
            base = root / controller
            if not (base / "cgroup.procs").exists():
                return None
            parent = base / "gridx" / (node_id or "node")
            parent.mkdir(parents=True, exist_ok=True)
            parents.append(parent)
    except OSError:
        return None
    return Cgroups(parents, v2=False)


def detect(node_id: str, root: Path = ROOT) -> Cgroups | None:
    """The node's task cgroups, or None where it may not make any."""
    if (root / "cgroup.controllers").exists():
        own = _own_v2_group(root)
        if own is None or not os.access(own, os.W_OK):
            return None
        return setup_v2(root, own, node_id)
    if os.geteuid() != 0:
        return None
    return setup_v1(root, node_id)

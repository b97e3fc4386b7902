"""The sandbox's pieces on their own: what bubblewrap is told to show, the cgroup layouts,
and which requirements a node accepts. (The whole sandbox is attacked in tests/security.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gridx.node import cgroups, sandbox
from gridx.node.environments import check_requirements
from gridx.node.errors import RequirementsError


def _mounts(args: list[str]) -> dict[str, str]:
    """Destination -> option of every bind, symlink and mount in a bubblewrap command line."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args) and args[i] != "--":
        flag = args[i]
        if flag in ("--ro-bind", "--bind", "--dev-bind", "--symlink"):
            out[args[i + 2]] = flag
            i += 3
        elif flag in ("--dev", "--proc", "--tmpfs", "--dir"):
            out[args[i + 1]] = flag
            i += 2
        elif flag in ("--uid", "--gid", "--perms", "--hostname", "--chdir"):
            i += 2
        else:
            i += 1
    return out


def test_bubblewrap_shows_only_the_listed_paths(tmp_path: Path) -> None:
    work = tmp_path / "state" / "tasks" / "t" / "work"
    env = tmp_path / "state" / "envs" / "abc"
    etc = sandbox.write_synthetic_etc(tmp_path / "etc")
    cmd = sandbox.wrap(["python", "train.py"], work, "bubblewrap", [env], etc=etc)
    mounts = _mounts(cmd)
    assert "/" not in mounts
    writable = {d for d, flag in mounts.items() if flag == "--bind"}
    assert writable == {str(work)}
    assert mounts[str(env)] == "--ro-bind"
    shown = {d for d, flag in mounts.items() if flag in ("--ro-bind", "--symlink")}
    system = {p for p, _ in sandbox.system_paths()}
    synthetic = {f"/etc/{n}" for n in sandbox.SYNTHETIC_ETC}
    assert shown == system | synthetic | {str(env)}
    for secret in ("/home", "/root", "/var", "/etc/shadow", "/srv"):
        assert not any(d == secret or d.startswith(secret + "/") for d in shown), secret
    state = str(tmp_path / "state")
    assert sorted(d for d in shown | writable if d.startswith(state)) == [str(env), str(work)]
    # the empty parents bubblewrap makes for the work folder are traversable (0755)
    parents = [cmd[i + 3] for i, a in enumerate(cmd) if a == "--perms" and cmd[i + 2] == "--dir"]
    assert str(tmp_path / "state") in parents and "0755" in cmd
    assert cmd[cmd.index("--") + 1 :][-2:] == ["python", "train.py"]
    assert "--unshare-net" in cmd and "--unshare-pid" in cmd and "--die-with-parent" in cmd


def test_a_root_node_drops_the_task_to_an_unprivileged_uid() -> None:
    user = sandbox.task_user()
    cmd = sandbox.wrap(["python"], Path("/w"), "bubblewrap", [])
    after = cmd[cmd.index("--") + 1 :]
    if os.geteuid() == 0:
        assert user.switches and user.uid not in (None, 0)
        assert after[0].endswith("setpriv") and f"--reuid={user.uid}" in after
        assert "--no-new-privs" in after and "--bounding-set=-all" in after
        assert "--unshare-user" not in cmd
    else:  # an ordinary user's node maps the task into a user namespace instead
        assert not user.switches and after == ["python"]
        assert "--unshare-user" in cmd and "--cap-drop" in cmd


def test_cgroup_v2_delegation_moves_the_node_into_a_leaf_and_caps_each_task(
    tmp_path: Path,
) -> None:
    root = tmp_path / "cgroup"
    own = root / "user.slice" / "gridx-node.service"
    own.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.procs").write_text("101\n102\n")
    groups = cgroups.setup_v2(root, own, "n-1")
    assert groups is not None and groups.v2
    assert (own / "node" / "cgroup.procs").read_text() == "102"  # the last pid written wins here
    assert (own / "cgroup.subtree_control").read_text() == "+pids +memory"
    task = groups.create("task-1", 64 << 20)
    path = own / "tasks-n-1" / "task-1"
    assert task.paths == [path]
    assert (path / "pids.max").read_text() == str(cgroups.PIDS_MAX)
    assert (path / "memory.max").read_text() == str(64 << 20)
    assert (path / "memory.swap.max").read_text() == "0"
    (path / "cgroup.procs").write_text("")
    task.kill()
    assert (path / "cgroup.kill").read_text() == "1"


def test_cgroup_v1_needs_the_pids_and_memory_hierarchies(tmp_path: Path) -> None:
    assert cgroups.setup_v1(tmp_path, "n") is None
    for controller in ("pids", "memory"):
        (tmp_path / controller).mkdir()
        (tmp_path / controller / "cgroup.procs").write_text("")
    groups = cgroups.setup_v1(tmp_path, "n")
    assert groups is not None and not groups.v2
    task = groups.create("t", 1 << 30)
    assert (tmp_path / "pids" / "gridx" / "n" / "t" / "pids.max").read_text() == "256"
    limit = tmp_path / "memory" / "gridx" / "n" / "t" / "memory.limit_in_bytes"
    assert limit.read_text() == str(1 << 30)
    assert len(task.paths) == 2


def test_requirements_name_packages_or_are_refused() -> None:
    ok = "numpy>=1.26  # arrays\n\n# comment\npandas[parquet]==2.2 ; python_version >= '3.10'\n"
    assert check_requirements(ok) == [
        "numpy>=1.26",
        "pandas[parquet]==2.2 ; python_version >= '3.10'",
    ]
    for text, code in (
        ("-e .\n", "requirements_rejected"),
        ("--index-url http://127.0.0.1:8080/simple\nnumpy\n", "requirements_rejected"),
        ("-r other.txt\n", "requirements_rejected"),
        ("numpy\nevil @ file:///tmp/evil-1.0.tar.gz\n", "requirements_need_build"),
        ("evil @ git+https://example.org/evil.git\n", "requirements_need_build"),
        ("not a requirement!\n", "requirements_rejected"),
    ):
        with pytest.raises(RequirementsError) as err:
            check_requirements(text)
        assert err.value.code == code, text


def test_a_jobs_environment_is_never_run_on_the_host(tmp_path: Path) -> None:
    """Its site-packages hold the job's wheels; a `.pth` among them would run at start-up."""
    from gridx.node.executors.process import ProcessExecutor

    env = tmp_path / "envs" / "abc"
    (env / "bin").mkdir(parents=True)
    marker = tmp_path / "ran-on-the-host"
    python = env / "bin" / "python"
    python.write_text(f"#!/bin/sh\ntouch {marker}\n")
    python.chmod(0o755)
    executor = ProcessExecutor(tmp_path / "state", sys.executable, "n", isolation="none")
    shown = executor._readonly(str(python))
    assert env in shown and not marker.exists()

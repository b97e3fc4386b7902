"""A node owner's mistakes end `gridx-node start` with one line saying what to fix, exit code 3,
and no traceback: no key, a wrong key, another owner's email, a URL where nothing answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridx.coordinator.cli.cluster import LocalCluster, free_port


def start_node(
    tmp_path: Path, url: str, *args: str, state_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDX_")}
    return subprocess.run(
        [sys.executable, "-m", "gridx.node", "start", "--coordinator", url,
         "--state-dir", str(state_dir or tmp_path / "node"), "--executor", "process",
         "--status-port", "0", "--allow-weak-sandbox", *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no key", ["this node is not registered yet: pass --enrolment-key"]),
        (
            "wrong key",
            ["registration refused: unknown or revoked API key", "check GRIDX_ENROLMENT_KEY"],
        ),
        ("other owner", ["owner_email does not match", "check GRIDX_OWNER_EMAIL"]),
        ("wrong url", ["no coordinator answers at http://127.0.0.1:", "GRIDX_COORDINATOR_URL"]),
    ],
)  # fmt: skip
def test_an_owner_mistake_is_one_line_and_exit_code_3(
    cluster: LocalCluster, tmp_path: Path, case: str, expected: list[str]
) -> None:
    args = {
        "no key": (cluster.url,),
        "wrong key": (cluster.url, "--enrolment-key", "gxk_not-a-key"),
        "other owner": (
            cluster.url,
            "--enrolment-key",
            cluster.api_key,
            "--owner-email",
            "someone@else.org",
        ),
        "wrong url": (f"http://127.0.0.1:{free_port()}", "--enrolment-key", cluster.api_key),
    }[case]
    out = start_node(tmp_path, *args)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert out.returncode == 3, out.stderr[-2000:]
    assert len(errors) == 1 and all(e in errors[0] for e in expected), out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "node" / "identity.json").exists()


def test_a_second_node_in_the_same_state_folder_is_refused(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    first = cluster.add_node("first")
    folder = cluster.root / "first"
    deadline = time.monotonic() + 60
    while not (folder / "identity.json").exists():  # the first node is up and registered
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    out = start_node(tmp_path, cluster.url, "--enrolment-key", cluster.api_key, state_dir=folder)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert out.returncode == 3, out.stderr[-2000:]
    assert len(errors) == 1 and f"another gridx-node (pid {first.pid})" in errors[0], errors
    assert first.poll() is None  # the first node carries on, its folder untouched

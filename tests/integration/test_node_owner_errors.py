"""A node owner's mistakes end `gridx-node start` with one line saying what to fix, exit code 3,
and no traceback: no key, a wrong key, another owner's email, a URL where nothing answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gridx.coordinator.cli.cluster import LocalCluster, free_port
from tests.integration.conftest import gridx


def key_file(folder: Path, key: str) -> str:
    """A file holding `key`, as an owner saves one."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "enrolment-key"
    path.write_text(key + "\n")
    return str(path)


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
        ("no key", ["this node is not registered yet: make a token with `gridx node token"]),
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
    wrong, right = (
        key_file(tmp_path / "wrong", "gxk_not-a-key"),
        key_file(tmp_path, cluster.api_key),
    )
    args = {
        "no key": (cluster.url,),
        "wrong key": (cluster.url, "--enrolment-key-file", wrong),
        "other owner": (
            cluster.url,
            "--enrolment-key-file",
            right,
            "--owner-email",
            "someone@else.org",
        ),
        "wrong url": (f"http://127.0.0.1:{free_port()}", "--enrolment-key-file", right),
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
    key = key_file(tmp_path, cluster.api_key)
    out = start_node(tmp_path, cluster.url, "--enrolment-key-file", key, state_dir=folder)
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error: ")]
    assert out.returncode == 3, out.stderr[-2000:]
    assert len(errors) == 1 and f"another gridx-node (pid {first.pid})" in errors[0], errors
    assert first.poll() is None  # the first node carries on, its folder untouched


def _registered(cluster: LocalCluster, name: str) -> Path:
    folder = cluster.root / name
    deadline = time.monotonic() + 60
    while not (folder / "identity.json").exists():
        assert cluster.nodes[name].poll() is None and time.monotonic() < deadline, (
            cluster.root / f"{name}.log"
        ).read_text()[-2000:]
        time.sleep(0.2)
    return folder


def test_a_node_enrols_with_a_single_use_token_that_never_sits_in_argv_or_config(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    made = gridx(cluster, "node", "token", "create", "--uses", "1", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    assert token.startswith("gxe_")
    # on the command line it is refused before anything runs: every local user reads argv
    argv = start_node(tmp_path, cluster.url, "--enrolment-key", token)
    assert argv.returncode == 2 and "--enrolment-key-file" in argv.stderr, argv.stderr
    # from a file: registers, and no process of the node carries the token in its argv
    no_env = {"GRIDX_ENROLMENT_KEY": ""}
    node = cluster.add_node("tokened", no_env, ("--enrolment-key-file", key_file(tmp_path, token)))
    state = _registered(cluster, "tokened")
    assert token.encode() not in Path(f"/proc/{node.pid}/cmdline").read_bytes()
    assert token not in (state / "identity.json").read_text()
    # used up: a second node with the same token is refused in one line
    again = start_node(tmp_path, cluster.url, "--enrolment-key-file", key_file(tmp_path, token))
    assert again.returncode == 3 and "used-up or expired enrolment token" in again.stderr
    # an API key in worker_config.env still enrols, with a warning, and leaves the file
    config = tmp_path / "worker_config.env"
    config.write_text(f"OWNER_EMAIL=admin@gridx.local\nENROLMENT_KEY={cluster.api_key}\n")
    cluster.add_node("keyed", no_env, ("--config", str(config)))
    _registered(cluster, "keyed")
    deadline = time.monotonic() + 30
    while "ENROLMENT_KEY" in config.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert config.read_text() == "OWNER_EMAIL=admin@gridx.local\n"
    assert "enrolled with an API key" in (cluster.root / "keyed.log").read_text()

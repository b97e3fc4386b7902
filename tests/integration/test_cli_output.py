"""What people read from the `gridx` CLI: field names as they typed them, counts as whole numbers,
tasks counted once, durations, and the next command to run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import Client, gridx

TRAIN = """
import json, os, torch
torch.save({"w": torch.zeros(1)}, os.environ["GRIDX_OUTPUT"])
json.dump({"loss": 0.5, "samples": 10}, open(os.environ["GRIDX_METRICS"], "w"))
"""


def test_a_job_as_the_cli_shows_it(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.add_node("node-1")
    (tmp_path / "train.py").write_text(TRAIN)
    data = tmp_path / "d.csv"
    data.write_text("x\n" + "".join(f"{i}\n" for i in range(20)))
    out = gridx(
        cluster, "job", "submit", str(tmp_path / "train.py"), "--data", str(data),
        "--rounds", "2", "--shards", "2", "--wait", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "round 1 training: loss=0.5000 samples=20" in out.stdout, out.stdout  # not 20.0000
    listed = gridx(cluster, "job", "list").stdout.splitlines()
    assert listed[0].split()[:4] == ["ID", "STATUS", "ROUND", "TASKS"]
    # 4 training tasks of 4, not the initialisation step's on top: "5/4"
    assert listed[1].split()[1:4] == ["succeeded", "2/2", "4/4"], listed
    job_id = listed[1].split()[0]
    status = gridx(cluster, "job", "status", job_id).stdout
    assert f"{job_id}  " in status and "[succeeded, ran " in status, status
    shard_lines = [s for s in status.splitlines() if "shard 0:" in s]
    assert shard_lines and all("succeeded in " in s for s in shard_lines), status
    # --out: a file, or a folder to put the model in (for `submit --wait` and `download` alike)
    (tmp_path / "models").mkdir()
    for out, path in (("models", "models/final_model.pth"), ("m.pth", "m.pth"),
                      ("new/", "new/final_model.pth")):  # fmt: skip
        got = gridx(cluster, "job", "download", job_id, "--out", out, cwd=tmp_path)
        assert got.returncode == 0 and (tmp_path / path).is_file(), (out, got.stderr)


def test_settings_are_named_as_the_user_typed_them(cluster: LocalCluster, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    data = tmp_path / "d.csv"
    data.write_text("x\n1\n2\n")
    args = ("job", "submit", str(tmp_path / "train.py"), "--data", str(data))
    one = gridx(cluster, *args, "--rounds", "0")
    assert one.returncode == 1
    assert "invalid job config: --rounds must be a whole number >= 1, not 0" in one.stderr
    assert "Expected" not in one.stderr and "$." not in one.stderr, one.stderr
    two = gridx(cluster, *args, "--timeout", "0", "--shards", "0")
    assert "2 invalid settings: --timeout must be a whole number >= 1, not 0; --shards" in (
        two.stderr
    ), two.stderr
    assert "task_timeout_s" not in two.stderr


def test_urls_that_cannot_work_say_what_would(cluster: LocalCluster) -> None:
    env = {**os.environ, "GRIDX_API_KEY": cluster.api_key}
    bare = cluster.url.removeprefix("http://")
    for url, said in (
        (bare, f"has no scheme: use http://{bare} or https://{bare}"),
        (
            "https://" + bare,
            f"does not speak TLS (it looks like a plain-HTTP server): use http://{bare}",
        ),
        (cluster.url + "/nope", "answered (HTTP 404) but is not a Grid-X coordinator"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "gridx.coordinator.cli", "job", "list", "--url", url],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert out.returncode == 1 and said in out.stderr, (url, out.stderr)


def test_user_create_prints_the_line_to_use_the_key_and_is_audited(cluster: LocalCluster) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridx.coordinator.cli", "user", "create", "new@example.org",
         "--data-dir", str(cluster.data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    key = out.stdout.splitlines()[1]
    assert f"  export GRIDX_URL={cluster.url} GRIDX_API_KEY={key}" in out.stdout, out.stdout
    audit = gridx(cluster, "audit").stdout
    assert "user.create" in audit and "new@example.org" in audit, audit


def test_wait_rides_out_a_coordinator_restart(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.add_node("node-1")
    # registered before the coordinator goes down (a node that cannot register within its six
    # tries gives up saying so: that is not what this test is about)
    Client(cluster).wait_for_nodes(1)
    (tmp_path / "train.py").write_text("import time\ntime.sleep(4)\n" + TRAIN)
    data = tmp_path / "d.csv"
    data.write_text("x\n1\n2\n")
    env = {**os.environ, "GRIDX_URL": cluster.url, "GRIDX_API_KEY": cluster.api_key}
    wait = subprocess.Popen(
        [sys.executable, "-m", "gridx.coordinator.cli", "job", "submit",
         str(tmp_path / "train.py"), "--data", str(data), "--shards", "1", "--no-init-step",
         "--wait"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert wait.stderr is not None
    assert wait.stderr.readline().startswith("submitted ")
    cluster.kill_coordinator()
    time.sleep(2)  # the CLI polls a coordinator that is gone
    cluster.start_coordinator()
    out, err = wait.communicate(timeout=180)
    assert wait.returncode == 0, err
    assert "asking again every second (the job goes on)" in err, err
    assert "the coordinator answers again" in err
    assert "round 1 training: loss=0.5000" in out, out


def test_a_running_job_is_not_deleted_nor_asked_about(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.add_node("node-1")
    (tmp_path / "train.py").write_text("import time\ntime.sleep(300)\n")
    data = tmp_path / "d.csv"
    data.write_text("x\n" + "1234567\n" * 1_100_000)  # 8.8 MB: its upload shows a bar
    args = ("--data", str(data), "--shards", "1", "--no-init-step")
    submitted = gridx(cluster, "job", "submit", str(tmp_path / "train.py"), *args)
    assert "uploading 8.8 MB" in submitted.stderr, submitted.stderr
    job_id = submitted.stdout.strip()
    out = gridx(cluster, "job", "delete", job_id)  # no --yes: it would ask, were the job over
    assert out.returncode == 1 and "[y/N]" not in out.stdout, out.stdout
    assert f"only an ended job can be deleted; `gridx job cancel {job_id}` first" in out.stderr
    assert gridx(cluster, "job", "cancel", job_id).returncode == 0
    assert gridx(cluster, "job", "delete", job_id, "--yes").returncode == 0

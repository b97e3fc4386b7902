"""Whole jobs on real processes: the CLI, two nodes, the digits example, the minimal example."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import DIGITS, DIGITS_JOB, REPO, Client, gridx


def test_multi_round_digits_job_through_the_cli(cluster: LocalCluster, tmp_path: Path) -> None:
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    out = gridx(
        cluster,
        *DIGITS_JOB,
        "--rounds",
        "3",
        "--shards",
        "2",
        "--epochs",
        "2",
        "--wait",
        "--json",
        "--out",
        str(tmp_path),
    )
    assert out.returncode == 0, out.stderr + out.stdout
    result = json.loads(out.stdout)
    assert result["job"]["status"] == "succeeded"
    rounds = result["rounds"]  # the initialisation step (-1), then the three rounds
    assert [(r["index"], r["status"]) for r in rounds] == [(i, "done") for i in (-1, 0, 1, 2)]
    accs = [r["metrics"]["accuracy"] for r in rounds[1:]]
    assert accs[-1] > 0.9
    # every round's model on the held-out test split, by the job's own evaluate.py on a node
    held_out = [r["held_out"] for r in rounds[1:]]
    assert all(h is not None and h["samples"] == 360 for h in held_out), held_out
    assert held_out[-1]["accuracy"] > 0.9 and rounds[0]["held_out"] is None
    # round 0 starts from the initialisation step's model, each round from the previous one's
    assert rounds[0]["input_model_sha256"] is None
    for prev, cur in itertools.pairwise(rounds):
        assert cur["input_model_sha256"] == prev["output_model_sha256"]
    model = Path(result["model"])
    state = torch.load(model, weights_only=True)
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    evaluated = subprocess.run(
        [sys.executable, str(DIGITS / "evaluate.py"), str(model)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(evaluated.stdout)["accuracy"] > 0.9
    # listings for scripts
    jobs = json.loads(gridx(cluster, "job", "list", "--json").stdout)
    assert [j["status"] for j in jobs] == ["succeeded"]
    assert (jobs[0]["tasks_done"], jobs[0]["tasks_total"]) == (6, 6)  # training tasks only
    nodes = json.loads(gridx(cluster, "node", "list", "--json").stdout)
    assert sorted(n["name"] for n in nodes) == ["node-1", "node-2"]
    assert all(n["status"] == "online" for n in nodes)
    assert sum(n["tasks_done"] for n in nodes) == 10  # 1 init + 6 training + 3 evaluations
    status = gridx(cluster, "job", "status", result["job"]["id"])
    assert status.returncode == 0 and "round 3: done" in status.stdout
    watched = gridx(cluster, "job", "watch", result["job"]["id"])  # any job, finished or not
    assert watched.returncode == 0 and "round 3 held-out: " in watched.stdout
    assert f"job {result['job']['id']} succeeded" in watched.stdout
    safetensors = tmp_path / "m.safetensors"
    dl = gridx(
        cluster,
        "job",
        "download",
        result["job"]["id"],
        "--format",
        "safetensors",
        "--out",
        str(safetensors),
    )
    assert dl.returncode == 0 and safetensors.stat().st_size > 0


def test_a_plain_script_that_only_writes_model_pth_works(
    cluster: LocalCluster, client: Client
) -> None:
    node = cluster.add_node("node-1", args=("--once",))
    train = (REPO / "examples" / "minimal" / "train.py").read_bytes()
    job_id = client.submit(train, {"rounds": 1, "shards": 1})
    body = client.wait_done(job_id)
    assert body["job"]["status"] == "succeeded", body
    assert node.wait(timeout=30) == 0  # --once: one task, then exit
    r = client.http.get(f"/jobs/{job_id}/model")
    assert r.status_code == 200


def test_cli_errors_are_one_clear_line_and_a_nonzero_exit(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text("print(1)\n")
    out = gridx(cluster, "job", "submit", str(script), "--rounds", "0")
    assert out.returncode == 1
    assert "--rounds must be a whole number >= 1, not 0" in out.stderr and "422" in out.stderr
    env_bad = {**os.environ, "GRIDX_URL": cluster.url, "GRIDX_API_KEY": "gxk_wrong"}
    out = subprocess.run(
        [sys.executable, "-m", "gridx.coordinator.cli", "job", "list"],
        capture_output=True,
        text=True,
        env=env_bad,
    )
    assert out.returncode == 1 and "unknown or revoked API key" in out.stderr
    out = gridx(cluster, "job", "status", "j-nope")
    assert out.returncode == 1 and "404" in out.stderr


def test_robust_and_adaptive_strategies_run_end_to_end(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    common = [
        "--data",
        str(DIGITS / "data" / "train.csv"),
        "--rounds",
        "2",
        "--epochs",
        "2",
        "--wait",
        "--json",
    ]
    runs = {
        "fedmedian": ["--strategy", "fedmedian", "--shards", "3"],
        # the server optimizer starts from the initialisation step's model in round 0
        "fedadam": ["--strategy", "fedadam", "--param", "eta=0.05", "--shards", "2"],
        "fedprox": ["--strategy", "fedprox", "--param", "mu=0.01", "--shards", "2"],
    }
    for name, extra in runs.items():
        out_dir = tmp_path / name
        out = gridx(
            cluster,
            "job",
            "submit",
            str(DIGITS / "train.py"),
            *common,
            *extra,
            "--out",
            str(out_dir),
        )
        assert out.returncode == 0, (name, out.stderr + out.stdout)
        result = json.loads(out.stdout)
        assert result["job"]["status"] == "succeeded"
        evaluated = subprocess.run(
            [sys.executable, str(DIGITS / "evaluate.py"), result["model"]],
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(evaluated.stdout)["accuracy"] > 0.85, name
        status = gridx(cluster, "job", "status", result["job"]["id"])
        assert f"strategy={name}(" in status.stdout


def test_a_failed_job_shows_the_attempt_that_failed_not_the_cancellations_after(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    cluster.add_node("node-1")
    cluster.add_node("node-2")
    script = tmp_path / "train.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.environ['GRIDX_SHARD'] == '1':\n"
        "    sys.exit('shard 1 cannot parse column 7')\n"
        "time.sleep(60)\n"
    )
    data = tmp_path / "d.csv"
    data.write_text("x\n" + "".join(f"{i}\n" for i in range(10)))
    out = gridx(
        cluster, "job", "submit", str(script), "--data", str(data), "--shards", "2",
        "--max-attempts", "1", "--no-init-step", "--wait",
    )  # fmt: skip
    assert out.returncode == 1
    assert "first failed attempt (round 1, shard 1, try 1" in out.stderr, out.stderr
    assert "shard 1 cannot parse column 7" in out.stderr
    assert "job cancelled" not in out.stderr
    job_id = json.loads(gridx(cluster, "job", "list", "--json").stdout)[0]["id"]
    logs = gridx(cluster, "job", "logs", job_id)
    assert logs.returncode == 0, logs.stderr
    header = "== round 1, shard 1, attempt 1 on "
    assert header in logs.stdout and "user_error" in logs.stdout, logs.stdout
    assert "   shard 1 cannot parse column 7" in logs.stdout  # its stderr, indented
    watched = gridx(cluster, "job", "watch", job_id)
    assert watched.returncode == 1 and "first failed attempt (round 1, shard 1" in watched.stderr
    missing = gridx(cluster, "job", "logs", job_id, "--task", "nope")
    assert missing.returncode == 1 and "has no task 'nope'" in missing.stderr


def test_the_regression_demo_matches_centralized_training() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gridx.coordinator.cli", "demo", "--example", "regression",
         "--rounds", "2", "--epochs", "10", "--nodes", "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["metric"] == "r2" and result["federated"] > 0.9
    assert result["federated"] > result["central"] - 0.02  # within 2 points of R²
    assert "held-out r2, centralized baseline" in out.stdout


def test_logs_follow_a_running_task_and_keep_a_succeeded_ones_output(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    cluster.add_node("node-1")
    client.wait_for_nodes(1)
    done = client.submit(
        b"import torch, os\nprint('hello from a task that succeeded', flush=True)\n"
        b"torch.save({'w': torch.zeros(1)}, os.environ['GRIDX_OUTPUT'])\n",
        {"rounds": 1, "shards": 1},
    )
    assert client.wait_done(done)["job"]["status"] == "succeeded"
    kept = gridx(cluster, "job", "logs", done)
    assert "succeeded" in kept.stdout and "   hello from a task that succeeded" in kept.stdout

    slow = client.submit(
        b"import time\nprint('step 1 of 2', flush=True)\ntime.sleep(300)\n",
        {"rounds": 1, "shards": 1, "task_timeout_s": 600},
    )
    env = {**os.environ, "GRIDX_URL": cluster.url, "GRIDX_API_KEY": cluster.api_key}
    follow = subprocess.Popen(
        [sys.executable, "-m", "gridx.coordinator.cli", "job", "logs", slow, "--follow"],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert follow.stdout is not None
    seen = []
    for out in follow.stdout:  # blocks until the line streams in with a heartbeat
        seen.append(out)
        if "step 1 of 2" in out:
            break
    assert any("running" in s for s in seen), seen
    assert client.job(slow)["tasks"][0]["status"] == "leased"  # printed while it runs
    assert client.http.post(f"/jobs/{slow}/cancel").status_code == 200
    rest, _ = follow.communicate(timeout=60)  # the job ended: --follow ends too
    assert follow.returncode == 0 and "cancelled" in rest, rest

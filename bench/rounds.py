"""Seconds per round of a trivial federated job: Grid-X against Flower, and against cold starts.

Each client loads the round's model, adds 1e-3 to every tensor and saves it; 10 rounds, one
shard per node, a real coordinator and real nodes on loopback. The figure is the median time
per round over rounds 2..10 (a round: from the end of the previous one to the end of its merge).
Cases: 2 and 8 nodes with a small model, 2 nodes with a 100 MB model, and (where a Docker engine
with the executor image answers) 2 docker nodes. The baseline, measured in the same run, is the
same job with `--no-warm` (a fresh interpreter per task: the cost this bench exists to show).
Where the `bench` extra is installed (Flower), the same job also runs as a Flower app
(`bench/flower_app`) on Flower's deployment runtime: a SuperLink and one SuperNode per node,
started by the bench on loopback, the same model and rounds, timed the same way.
The straggler case trains the digits example (4 nodes, 4 shards) with one node 10x slower (it
sleeps 9x its own training time, keyed on its state folder's name): the whole job's time with
backup tasks, and with `min_fraction` 0.75 and a 1 s deadline, against the same job on 4 equal
nodes (and with no straggler rule, for scale), each with its held-out accuracy.

    python bench/rounds.py [--rounds 10] [--cases 2n_small 8n_small 2n_large docker_2n_small
                            straggler]
Last line: {"s_per_round_2n_small": x, "flower_s_per_round_2n_small": y, "speedup_2n_small": y/x,
            "cold_s_per_round_2n_small": z, "speedup_vs_cold_2n_small": z/x, ... (8n_small,
            2n_large, docker_2n_small), "docker_vs_process_2n_small": ...,
            "straggler_slowdown": ..., "deadline_slowdown": ...}
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster
from gridx.coordinator.cli.demo import held_out
from gridx.coordinator.cli.progress import watch
from gridx.node.executors.docker import docker_available

TRIVIAL = """\
import os
import torch
state = torch.load(os.environ["GRIDX_INIT_MODEL"], weights_only=True)
torch.save({k: v + 1e-3 for k, v in state.items()}, os.environ["GRIDX_OUTPUT"])
"""
DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
SLOW = """\
import atexit, os, time
_started = time.perf_counter()
if "node-slow" in os.getcwd():  # the work folder lies in the node's state folder
    atexit.register(lambda: time.sleep(9 * (time.perf_counter() - _started)))
"""
STRAGGLER_RULES = {  # job config on top of the digits job
    "equal": {},  # 4 equal nodes (the slow one runs the unslowed script)
    "no_rule": {},
    "backup": {"backup_tasks": True},
    "deadline": {"min_fraction": 0.75, "round_deadline_s": 1},
}
CASES = {  # nodes, parameters of the model, executor
    "2n_small": (2, 1_000, "process"),
    "8n_small": (8, 1_000, "process"),
    "2n_large": (2, 25_000_000, "process"),
    "docker_2n_small": (2, 1_000, "docker"),
}


def model(work: Path, params: int) -> Path:
    path = work / f"model-{params}.pth"
    if not path.exists():
        torch.save({"w": torch.zeros(params)}, path)
    return path


def per_round_s(client: ApiClient, job_id: str) -> float:
    """Median seconds per round over rounds 2.. (each from the end of the one before)."""
    detail = watch(client, job_id, quiet=True)
    if detail.job.status != "succeeded":
        raise SystemExit(f"job {job_id} {detail.job.status}: {detail.job.error}")
    ends = [r.finished_at or 0 for r in detail.rounds if r.index >= 0]
    return statistics.median((b - a) / 1000 for a, b in itertools.pairwise(ends))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_matching(marks: list[str]) -> None:
    """Kill every process whose command line names one of `marks` (Flower's daemons spawn
    helpers of their own, in sessions of their own)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if any(m in text for m in marks):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


def flower_per_round_s(work: Path, nodes: int, params: int, rounds: int) -> float:
    """The same job as a Flower app on Flower's deployment runtime; median s/round (2..)."""
    home = work / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    link = _free_port()
    ports = [_free_port() for _ in range(nodes)]
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\n'
        f'address = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    logs = (work / "flower.log").open("ab")
    daemons = [
        subprocess.Popen(
            ["flower-superlink", "--insecure", "--port", str(link),
             "--disable-runtime-dependency-installation"],
            env=env, stdout=logs, stderr=logs, start_new_session=True,
        )
    ]  # fmt: skip
    times = work / "flower-times.json"
    try:
        time.sleep(3)
        for i, port in enumerate(ports):
            daemons.append(
                subprocess.Popen(
                    ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                     "--port", str(port), "--node-config", f"partition-id={i}"],
                    env=env, stdout=logs, stderr=logs, start_new_session=True,
                )
            )  # fmt: skip
        config = f"times-file='{times}' num-rounds={rounds} params={params} nodes={nodes}"
        subprocess.run(
            ["flwr", "run", str(Path(__file__).parent / "flower_app"), "bench",
             "--run-config", config, "--stream"],
            env=env, stdout=logs, stderr=logs, timeout=3600, check=True,
        )  # fmt: skip
        ends = json.loads(times.read_text())
    finally:
        for d in daemons:
            d.kill()
            d.wait(10)
        _kill_matching([f"127.0.0.1:{p}" for p in (link, *ports)])  # their helpers
    return statistics.median(b - a for a, b in itertools.pairwise(ends))


def run_case(
    work: Path, name: str, rounds: int, script: Path, modes: tuple[str, ...]
) -> dict[str, float]:
    nodes, params, executor = CASES[name]
    start = model(work, params)
    figures: dict[str, float] = {}
    with LocalCluster(work / name) as cluster:
        for i in range(nodes):
            cluster.add_node(f"node-{i}", args=("--executor", executor))
        client = ApiClient(cluster.url, cluster.api_key)
        for mode in modes:
            config = {"name": f"{name}-{mode}", "rounds": rounds, "shards": nodes}
            config |= {"warm": mode == "warm", "task_timeout_s": 600}
            detail = client.submit(config, script, None, None, start)
            figures[mode] = per_round_s(client, detail.job.id)
            print(f"  {name:16s} {mode:5s} {figures[mode]:7.3f} s/round", flush=True)
    return figures


def straggler_case(work: Path, rounds: int) -> dict[str, float]:
    """The digits job on 4 nodes, one 10x slower, under each straggler rule."""
    plain = (DIGITS / "train.py").read_text()
    scripts = {"equal": work / "digits.py", "slow": work / "digits_slow.py"}
    scripts["equal"].write_text(plain)
    head, future, rest = plain.partition("from __future__ import annotations\n")
    scripts["slow"].write_text(head + future + SLOW + rest if future else SLOW + plain)
    out: dict[str, float] = {}
    with LocalCluster(work / "straggler") as cluster:
        for name in ("node-0", "node-1", "node-2", "node-slow"):
            cluster.add_node(name, args=("--executor", "process"))
        client = ApiClient(cluster.url, cluster.api_key)
        for rule, extra in STRAGGLER_RULES.items():
            config = {"name": rule, "rounds": rounds, "shards": 4, "epochs": 2, "seed": 1}
            script = scripts["equal" if rule == "equal" else "slow"]
            started = time.perf_counter()
            detail = client.submit(config | extra, script, None, DIGITS / "data/train.csv", None)
            detail = watch(client, detail.job.id, quiet=True)
            seconds = time.perf_counter() - started
            if detail.job.status != "succeeded":
                raise SystemExit(f"{rule}: job {detail.job.status}: {detail.job.error}")
            model = client.download(detail.job.id, "pth", work / f"{rule}.pth")
            accuracy = held_out(DIGITS, model)[1]
            print(f"  straggler {rule:9s} {seconds:7.1f} s  held-out accuracy {accuracy:.4f}")
            out[f"straggler_{rule}_s"] = round(seconds, 2)
            out[f"straggler_{rule}_accuracy"] = round(accuracy, 4)
    out["straggler_slowdown"] = round(out["straggler_backup_s"] / out["straggler_equal_s"], 2)
    out["deadline_slowdown"] = round(out["straggler_deadline_s"] / out["straggler_equal_s"], 2)
    out["no_rule_slowdown"] = round(out["straggler_no_rule_s"] / out["straggler_equal_s"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--cases", nargs="*", default=[*CASES, "straggler"])
    ap.add_argument("--straggler-rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gridx-bench-rounds-"))
    script = work / "train.py"
    script.write_text(TRIVIAL)
    out: dict[str, float] = {}
    has_flower = importlib.util.find_spec("flwr") is not None
    flower: dict[tuple[int, int], float] = {}
    if not has_flower:
        print("  (no Flower here: `pip install -e '.[bench]'` adds the Flower baseline)")
    for name in args.cases:
        if name == "straggler":
            out |= straggler_case(work, args.straggler_rounds)
            continue
        if CASES[name][2] == "docker" and not docker_available():
            print(f"  {name}: skipped (no Docker engine answers)")
            continue
        figures = run_case(work, name, args.rounds, script, ("warm", "cold"))
        out[f"s_per_round_{name}"] = round(figures["warm"], 4)
        out[f"cold_s_per_round_{name}"] = round(figures["cold"], 4)
        out[f"speedup_vs_cold_{name}"] = round(figures["cold"] / figures["warm"], 2)
        nodes, params, _ = CASES[name]
        if has_flower:  # the Flower app is the same whatever executor Grid-X's nodes use
            if (nodes, params) not in flower:
                flower[nodes, params] = flower_per_round_s(
                    work / f"flower-{name}", nodes, params, args.rounds
                )
                print(f"  {name:16s} Flower {flower[nodes, params]:7.3f} s/round", flush=True)
            out[f"flower_s_per_round_{name}"] = round(flower[nodes, params], 4)
            out[f"speedup_{name}"] = round(flower[nodes, params] / figures["warm"], 2)
    if "s_per_round_docker_2n_small" in out and "s_per_round_2n_small" in out:
        ratio = out["s_per_round_docker_2n_small"] / out["s_per_round_2n_small"]
        out["docker_vs_process_2n_small"] = round(ratio, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

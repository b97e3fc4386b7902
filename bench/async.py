"""Time to a target accuracy on an uneven fleet: sync FedAvg, sync with backup tasks, async
FedBuff and async with DiLoCo's outer step; then adaptive replication against cheating nodes.

The fleet: 8 real nodes on loopback, two each 1x, 2x, 5x and 10x slower (every task of a node
takes at least BASE_S times its factor: the script sleeps out the rest, keyed on the node's state
folder's name). The job: the digits example (an MLP on 8x8 digits), 8 shards, 2 local epochs.
Every case merges the same number of updates (sync: ROUNDS rounds of 8; async: 2 x ROUNDS steps
of a buffer of 4). Each merged model is downloaded and evaluated on the held-out split here; a
case's time to target is from its first training round's start to the end of the first merge
whose model reaches TARGET. The baseline, measured in the same run, is sync FedAvg.

Cheating: the same fleet with two nodes whose updates are garbage 30% of the time (their script
scales its weights by 5, keyed on the node's folder and a draw per task), under fixed replicas
(2 copies of every shard) and `--replicas adaptive`: the extra copies each needed as a fraction
of the job's tasks, whether any wrong update was merged (checked from the tasks' own outputs),
and the final accuracy against the honest fleet's sync FedAvg.

    python bench/async.py [--rounds 12] [--target 0.93] [--cases timing cheating]
                          [--modes sync backup async diloco]
Last line: {"async_speedup_vs_sync": ..., "async_speedup_vs_backup": ..., "async_gap_points": ...,
            "diloco_speedup_vs_sync": ..., "adaptive_extra_task_fraction": ...,
            "fixed_extra_task_fraction": ..., "adaptive_wrong_merged": ...,
            "adaptive_gap_points": ...}
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster, make_user
from gridx.coordinator.cli.progress import watch
from gridx.schemas.jobs import JobDetail

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
SPEEDS = (1, 1, 2, 2, 5, 5, 10, 10)
BASE_S = 0.4
CHEATERS = (4, 6)
"""The cheating nodes (by index in SPEEDS): a 5x and a 10x one."""
PACE = f"""
import re as _re, time as _time
def _paced(run):
    started = _time.perf_counter()
    run()
    found = _re.search(r"-x(\\d+)", os.getcwd())  # the work folder lies in the node's folder
    factor = int(found.group(1)) if found else 1
    _time.sleep(max(0.0, {BASE_S} * factor - (_time.perf_counter() - started)))
"""
CHEAT = """
def _cheat():  # a cheating node's update is garbage 30% of the time (a draw per task)
    import random
    if "-cheat-x" in os.getcwd() and random.random() < 0.3:
        out = os.environ.get("GRIDX_OUTPUT", "model.pth")
        torch.save({k: v * 5 for k, v in torch.load(out, weights_only=True).items()}, out)
        Path(os.environ.get("GRIDX_METRICS", "metrics.json")).write_text('{"cheated": 1}')
"""
CASES: dict[str, dict[str, Any]] = {  # the job config of each timing case, beside the digits job
    "sync": {},
    "backup": {"backup_tasks": True},
    "async": {"mode": "async", "buffer": 4},
    # DiLoCo's outer step, Nesterov momentum; its defaults (lr 0.7, momentum 0.9: a steady step
    # of lr / (1 - momentum) = 7x the average) are tuned for hundreds of inner steps of an LLM and
    # diverge here, so lr / (1 - momentum) = 1 as FedAvg's
    "diloco": {
        "mode": "async",
        "buffer": 4,
        "strategy": {"name": "diloco", "server_lr": 0.5, "momentum": 0.5},
    },
}


def script(work: Path, cheat: bool) -> Path:
    """The digits train.py, paced by its node's factor (and cheating where asked)."""
    plain = (DIGITS / "train.py").read_text()
    call = 'if __name__ == "__main__":\n    main()\n'
    assert call in plain
    extra = PACE + (CHEAT if cheat else "")
    run = "_paced(lambda: (main(), _cheat()))" if cheat else "_paced(main)"
    path = work / ("train_cheat.py" if cheat else "train_paced.py")
    path.write_text(plain.replace(call, extra + f'\nif __name__ == "__main__":\n    {run}\n'))
    return path


def evaluator() -> Any:
    spec = importlib.util.spec_from_file_location("digits_evaluate", DIGITS / "evaluate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.evaluate


def run_job(client: ApiClient, config: dict[str, Any], train: Path) -> JobDetail:
    detail = client.submit(config, train, DIGITS / "requirements.txt", DIGITS / "data/train.csv")
    detail = watch(client, detail.job.id, quiet=True)
    if detail.job.status != "succeeded":
        raise SystemExit(f"{config['name']}: job {detail.job.status}: {detail.job.error}")
    return detail


def curve(client: ApiClient, detail: JobDetail, work: Path) -> list[tuple[float, float]]:
    """(seconds since the first training round started, held-out accuracy) per merged model."""
    evaluate = evaluator()
    steps = [r for r in detail.rounds if r.index >= 0 and r.status == "done"]
    start = min(r.started_at for r in steps)
    out = []
    for r in steps:
        path = client.download(
            detail.job.id, "pth", work / f"{detail.job.id}-{r.index}.pth", r.index
        )
        accuracy = evaluate(path, DIGITS / "data" / "test.csv")["accuracy"]
        out.append((((r.finished_at or 0) - start) / 1000, accuracy))
    return out


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    """The first time the curve reaches `target` (None: never)."""
    return next((t for t, acc in points if acc >= target), None)


def ratio(slow: float | None, fast: float | None) -> float | None:
    """slow / fast, rounded (None when either never reached the target)."""
    return round(slow / fast, 2) if slow is not None and fast is not None else None


def fleet(cluster: LocalCluster, cheaters: tuple[int, ...] = ()) -> None:
    """The 8 nodes, each of its own owner (a shard's copies go to nodes of different owners)."""
    for i, factor in enumerate(SPEEDS):
        cheat = "cheat-" if i in cheaters else ""
        key = make_user(cluster.data_dir, f"volunteer-{i}@bench.local")
        cluster.add_node(
            f"node-{i}-{cheat}x{factor}",
            {"GRIDX_ENROLMENT_KEY": key},
            args=("--executor", "process"),
        )


def timing(work: Path, rounds: int, target: float, modes: list[str]) -> dict[str, float | None]:
    train = script(work, cheat=False)
    found: dict[str, list[tuple[float, float]]] = {}
    with LocalCluster(work / "timing") as cluster:
        fleet(cluster)
        client = ApiClient(cluster.url, cluster.api_key)
        for case in modes:
            extra = CASES[case]
            # the same number of updates in every case: rounds x 8 shards
            steps = rounds * 8 // extra["buffer"] if extra.get("mode") == "async" else rounds
            config = {"name": case, "rounds": steps, "shards": 8, "epochs": 2, "seed": 1}
            config |= {"keep_rounds": steps, "task_timeout_s": 600, **extra}
            began = time.perf_counter()
            detail = run_job(client, config, train)
            found[case] = curve(client, detail, work)
            to_target = time_to(found[case], target)
            reached = f"{to_target:6.1f} s" if to_target is not None else " never"
            print(
                f"  {case:7s} {time.perf_counter() - began:6.1f} s in all, "
                f"{reached} to {target:.2f}, final accuracy {found[case][-1][1]:.4f}\n"
                f"          {' '.join(f'{t:.1f}s:{a:.3f}' for t, a in found[case])}",
                flush=True,
            )
    reach = {c: time_to(p, target) for c, p in found.items()}
    final = {c: p[-1][1] for c, p in found.items()}
    out: dict[str, float | None] = {f"{c}_s_to_target": t for c, t in reach.items()}
    out |= {f"{c}_final_accuracy": round(a, 4) for c, a in final.items()}
    out["async_speedup_vs_sync"] = ratio(reach.get("sync"), reach.get("async"))
    out["async_speedup_vs_backup"] = ratio(reach.get("backup"), reach.get("async"))
    out["diloco_speedup_vs_sync"] = ratio(reach.get("sync"), reach.get("diloco"))
    for case in ("async", "diloco"):
        if "sync" in final and case in final:
            out[f"{case}_gap_points"] = round(100 * (final["sync"] - final[case]), 2)
    return out


def replication(detail: JobDetail) -> tuple[float, int]:
    """The extra copies a replicated job ran, as a fraction of its training tasks (rounds x
    shards), and how many wrong updates it merged (a cheating task says so in its metrics; an
    accepted copy is `agreed` or `trusted`)."""
    train = [t for t in detail.tasks if t.kind == "train" and t.round >= 0]
    extra = sum(1 for t in train if t.copy > 0 and t.status == "succeeded")
    wrong = sum(
        1 for t in train if (t.metrics or {}).get("cheated") and t.verdict in ("agreed", "trusted")
    )
    return extra / (detail.config.rounds * detail.config.shards), wrong


def cheating(work: Path, rounds: int, warm_up: int) -> dict[str, float]:
    """Fixed replicas and adaptive replication with two nodes of eight cheating 30% of the
    time; the fleet first earns its record in a warm-up job (adaptive, not measured)."""
    train = script(work, cheat=True)
    out: dict[str, float] = {}
    evaluate = evaluator()
    with LocalCluster(work / "replication") as cluster:
        fleet(cluster, cheaters=CHEATERS)
        client = ApiClient(cluster.url, cluster.api_key)
        base = {"shards": 8, "epochs": 2, "seed": 1, "task_timeout_s": 600}
        for case, replicas, n in (
            ("warm-up", "adaptive", warm_up),
            ("adaptive", "adaptive", rounds),
            ("fixed", 2, rounds),
        ):
            began = time.perf_counter()
            detail = run_job(
                client, {"name": case, "rounds": n, "replicas": replicas} | base, train
            )
            extra, wrong = replication(detail)
            model = client.download(detail.job.id, "pth", work / f"{case}.pth")
            accuracy = evaluate(model, DIGITS / "data" / "test.csv")["accuracy"]
            print(
                f"  {case:8s} {time.perf_counter() - began:6.1f} s, extra copies {extra:.1%} of "
                f"the tasks, wrong updates merged {wrong}, final accuracy {accuracy:.4f}",
                flush=True,
            )
            if case != "warm-up":
                out[f"{case}_extra_task_fraction"] = round(extra, 3)
                out[f"{case}_wrong_merged"] = wrong
                out[f"{case}_final_accuracy"] = round(accuracy, 4)
        trust = {n.name: (n.streak, n.disagreed) for n in client.nodes()}
        print(f"  (streak, times outvoted) per node: {trust}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=12, help="sync rounds (async: twice the steps)")
    ap.add_argument("--target", type=float, default=0.93, help="held-out accuracy to reach")
    ap.add_argument("--warm-up", type=int, default=8, help="rounds the fleet earns trust in")
    ap.add_argument("--cases", nargs="*", default=["timing", "cheating"])
    ap.add_argument("--modes", nargs="*", default=list(CASES), help="timing cases to run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gridx-bench-async-"))
    out: dict[str, float | None] = {}
    if "timing" in args.cases:
        out |= timing(work, args.rounds, args.target, args.modes)
    if "cheating" in args.cases:
        out |= cheating(work, args.rounds, args.warm_up)
        sync, adaptive = out.get("sync_final_accuracy"), out.get("adaptive_final_accuracy")
        if sync is not None and adaptive is not None:
            gap = sync - adaptive
            out["adaptive_gap_points"] = round(100 * gap, 2)
        out["adaptive_wrong_merged"] = out.pop("adaptive_wrong_merged")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

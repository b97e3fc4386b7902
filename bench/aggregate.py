"""Aggregation speed and memory: Grid-X (reading client files) against Flower's rules (in memory).

Builds ResNet-like client models (50 float32 tensors: conv kernels and per-channel vectors) for
N=10 x 25 M and N=50 x 5 M parameters with random sample counts, writes them as safetensors, and
in one run measures:
  - the machine's streaming in-place add (torch `add_` over the same bytes in memory): the bound;
  - Grid-X FedAvg from the files to the round's model.pth (a round that is not the last),
    in a fresh process each, so its peak RSS growth can be read;
  - Flower 1.42's `aggregate` on the same arrays already in memory;
  - FedMedian, trimmed mean (beta 0.2) and Krum (f=2) against Flower's same rules, N=10 x 5 M.
Prints seconds, GB/s of client input, peak RSS growth in models, and the ratios; the last line is
one JSON object. Needs the bench extra: `pip install -e ".[bench]"` (Flower).

    python bench/aggregate.py [--dir DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

GB = 1e9


def resnet_like_shapes(params: int) -> list[tuple[int, ...]]:
    """25 conv kernels (c_out, c_in, 3, 3) and 25 channel vectors, about `params` in all."""
    widths = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 12  # ResNet-34-like stages
    base = sum(w * w * 9 + w for w in widths)
    scale = (params / base) ** 0.5
    shapes: list[tuple[int, ...]] = []
    for w in widths:
        c = max(8, round(w * scale))
        shapes += [(c, c, 3, 3), (c,)]
    return shapes


def make_clients(folder: Path, n: int, params: int, seed: int) -> list[tuple[int, str, float]]:
    """Write n client files; returns (shard, path, sample count) per client."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    shapes = resnet_like_shapes(params)
    clients = []
    for i in range(n):
        state = {f"layer{j:02d}": torch.randn(s, generator=g) for j, s in enumerate(shapes)}
        path = folder / f"client{i:02d}.safetensors"
        save_file(state, str(path))
        clients.append((i, str(path), float(rng.integers(100, 5000))))
    return clients


def load_arrays(clients: list[tuple[int, str, float]]) -> list[tuple[list[np.ndarray], int]]:
    """Flower's input: per client, a list of numpy arrays and its sample count, in memory."""
    from safetensors.numpy import load_file

    out = []
    for _, path, weight in clients:
        d = load_file(path)
        out.append(([d[k] for k in sorted(d)], int(weight)))
    return out


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bandwidth(n: int, params: int) -> float:
    """GB/s of input for an in-memory streaming add of n models into one accumulator."""
    xs = [torch.randn(params) for _ in range(n)]
    acc = torch.zeros(params)

    def run() -> None:
        acc.zero_()
        for x in xs:
            acc.add_(x, alpha=0.1)

    return n * params * 4 / best_of(3, run) / GB


def _status_kib(field: str) -> int:
    """A `VmRSS`/`VmHWM`-style figure of this process, in KiB (ru_maxrss would include the
    parent's pages from before exec, this does not)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def gridx_child(args: argparse.Namespace) -> None:
    """In a fresh process: one warm-up, then timed runs; prints seconds and peak RSS growth."""
    from gridx.coordinator.aggregation.engine import aggregate
    from gridx.coordinator.aggregation.work import AggregationJob
    from gridx.schemas.strategies import FedAvg, FedMedian, Krum, TrimmedMean

    strategies = {
        "fedavg": FedAvg(),
        "median": FedMedian(),
        "trimmed": TrimmedMean(beta=0.2),
        "krum": Krum(f=2, m=1),
    }
    clients = json.loads(Path(args.clients).read_text())
    out = Path(tempfile.mkdtemp(dir=args.dir))
    job = AggregationJob(  # a round that is not the job's last: it writes the round's .pth
        clients=[tuple(c) for c in clients],
        strategy=strategies[args.child],
        out_dir=str(out),
        max_bytes=1 << 40,
        final=False,
    )
    # warm up on tiny files, so lazy imports and first-use allocations are not counted
    tiny = make_clients(out / "warmup", 5, 10_000, seed=0)
    aggregate(
        AggregationJob(
            clients=tiny, strategy=strategies[args.child], out_dir=str(out), max_bytes=1 << 40
        )
    )
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    rss_before = _status_kib("VmRSS") * 1024
    runs = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = aggregate(job)
        runs.append((time.perf_counter() - t, result.merge_s))
    peak = _status_kib("VmHWM") * 1024
    shutil.rmtree(out, ignore_errors=True)
    seconds, merge_s = min(runs)
    print(
        json.dumps({"seconds": seconds, "merge_seconds": merge_s, "rss_growth": peak - rss_before})
    )


def run_gridx(rule: str, clients: list, folder: Path, repeat: int = 2) -> dict[str, float]:
    spec = folder / f"{rule}.json"
    spec.write_text(json.dumps(clients))
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            rule,
            "--clients",
            str(spec),
            "--dir",
            str(folder),
            "--repeat",
            str(repeat),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Grid-X aggregation vs Flower")
    parser.add_argument("--dir", default=None, help="where to write client files (temp dir)")
    parser.add_argument("--quick", action="store_true", help="10x smaller models (smoke test)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--clients", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        gridx_child(args)
        return
    from flwr.server.strategy.aggregate import (
        aggregate,
        aggregate_krum,
        aggregate_median,
        aggregate_trimmed_avg,
    )

    div = 10 if args.quick else 1
    root = Path(tempfile.mkdtemp(prefix="gridx-bench-agg-", dir=args.dir))
    figures: dict[str, float] = {}
    try:
        print(
            f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads"
        )
        for n, params in ((10, 25_000_000 // div), (50, 5_000_000 // div)):
            clients = make_clients(root / f"n{n}", n, params, seed=n)
            model_bytes = params * 4
            input_gb = n * model_bytes / GB
            bw = bandwidth(n, params)
            ours = run_gridx("fedavg", clients, root)
            arrays = load_arrays(clients)
            flower_s = best_of(2, lambda a=arrays: aggregate(a))
            del arrays
            ours_gbps, flower_gbps = input_gb / ours["seconds"], input_gb / flower_s
            rss_models = ours["rss_growth"] / model_bytes
            print(
                f"\nFedAvg N={n} x {params / 1e6:.0f} M params ({input_gb:.2f} GB of client input)"
            )
            print(f"  streaming add (bound) : {bw:6.2f} GB/s")
            print(
                f"  Grid-X, from files    : {ours['seconds']:6.3f} s  {ours_gbps:6.2f} GB/s  "
                f"peak RSS +{ours['rss_growth'] / 2**20:.0f} MiB = {rss_models:.2f} models"
            )
            merge_gbps = input_gb / ours["merge_seconds"]
            print(
                f"    of which the merge  : {ours['merge_seconds']:6.3f} s  {merge_gbps:6.2f} GB/s "
                "(the rest writes the round's model.pth; only a job's last round also writes "
                "model.safetensors)"
            )
            print(
                f"  Flower, in memory     : {flower_s:6.3f} s  {flower_gbps:6.2f} GB/s "
                "(result left in memory)"
            )
            print(
                f"  Grid-X / Flower {ours_gbps / flower_gbps:.2f}x with the round's model written, "
                f"{merge_gbps / flower_gbps:.2f}x merge only; "
                f"Grid-X / bandwidth {ours_gbps / bw:.0%} ({merge_gbps / bw:.0%} merge only)"
            )
            figures[f"merge_gbps_n{n}"] = round(merge_gbps, 3)
            figures[f"fedavg_gbps_n{n}"] = round(ours_gbps, 3)
            figures[f"flower_gbps_n{n}"] = round(flower_gbps, 3)
            figures[f"bandwidth_gbps_n{n}"] = round(bw, 3)
            figures[f"peak_rss_models_n{n}"] = round(rss_models, 3)
            shutil.rmtree(root / f"n{n}")
        figures["fedavg_gbps"] = figures["fedavg_gbps_n10"]
        figures["flower_gbps"] = figures["flower_gbps_n10"]
        figures["bandwidth_gbps"] = figures["bandwidth_gbps_n10"]
        figures["fedavg_vs_flower"] = round(figures["fedavg_gbps"] / figures["flower_gbps"], 2)
        figures["fedavg_vs_bandwidth"] = round(
            figures["fedavg_gbps"] / figures["bandwidth_gbps"], 3
        )
        figures["merge_vs_flower"] = round(figures["merge_gbps_n10"] / figures["flower_gbps"], 2)
        figures["merge_vs_bandwidth"] = round(
            figures["merge_gbps_n10"] / figures["bandwidth_gbps"], 3
        )

        n, params = 10, 5_000_000 // div
        clients = make_clients(root / "robust", n, params, seed=3)
        input_gb = n * params * 4 / GB
        arrays = load_arrays(clients)
        print(f"\nrobust rules N={n} x {params / 1e6:.0f} M params ({input_gb:.2f} GB)")
        flower_rules = {
            "median": lambda a=arrays: aggregate_median(a),
            "trimmed": lambda a=arrays: aggregate_trimmed_avg(a, 0.2),
            "krum": lambda a=arrays: aggregate_krum(a, 2, 0),
        }
        for rule, flower_fn in flower_rules.items():
            ours = run_gridx(rule, clients, root, repeat=2)
            flower_s = best_of(2, flower_fn)
            ratio = flower_s / ours["seconds"]
            ours_gbps = input_gb / ours["seconds"]
            print(
                f"  {rule:<8} Grid-X {ours['seconds']:6.3f} s ({ours_gbps:5.2f} GB/s, "
                f"RSS +{ours['rss_growth'] / (params * 4):.2f} models)  "
                f"Flower {flower_s:6.3f} s ({input_gb / flower_s:5.2f} GB/s)  {ratio:.1f}x"
            )
            figures[f"{rule}_vs_flower"] = round(ratio, 2)
            figures[f"{rule}_rss_models"] = round(ours["rss_growth"] / (params * 4), 3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""Volunteer links: a digits job with a 25 M-parameter model (100 MB) on 6 nodes behind `home`
links (50 Mbit/s down, 10 up; `tests/support/wan_lab.py`), FedAvg, with `--compress` off, int8,
int4 and topk:0.01: bytes uploaded per round, seconds per round and the held-out accuracy after
the same number of rounds, each against `off` measured in the same run. Then a 20 s cut of every
node's link in the middle of its upload (connections destroyed): the round completes and the
bytes on the wire stay close to one copy of each update. Where Flower is installed (the `bench`
extra), the same model's rounds on Flower's deployment runtime, its SuperNodes in the same
namespaces behind the same links (`bench/flower_app` with `random=1`: a model of random values,
which no transport can shrink; each client adds 1e-3 and sends it back; no training, so Flower's
figure is a lower bound). Last, a 2.5 GB model for one round on
2 `datacenter` nodes: the peak resident memory of the coordinator's processes (its own and each
pool worker's) and of the node processes (a task's own memory is its sandbox's), and the final
model's sha256 against a merge of the same updates computed apart.

Needs root (network namespaces, tc). Nodes run the process executor, cold (`--no-warm`: 6 warm
runners holding torch would not fit beside 6 models on a small machine).

    sudo python bench/wan.py [--rounds 3] [--nodes 6] [--profile home] [--big-gb 2.5]
                             [--cases off int8 int4 topk cut flower big]
Last line: {"bytes_ratio_int8": ..., "gap_points_int8": ..., "bytes_ratio_int4": ...,
            "gap_points_int4": ..., "bytes_ratio_topk": ..., "gap_points_topk": ...,
            "speedup_int8_vs_off_home": ..., "speedup_int8_vs_flower_home": ...,
            "resume_bytes_ratio": ..., "coordinator_rss_mb_2p5gb": ..., "node_rss_mb_2p5gb": ...,
            "final_sha256_matches_2p5gb": 1.0, plus each case's s_per_round_* and accuracy_*}
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from torch import nn

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster
from gridx.coordinator.cli.progress import watch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the test suites' WAN lab
from tests.support.wan_lab import WanLab

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits" / "data"
WIDTHS = (64, 4096, 4096, 2048, 10)
TRAIN = f"""\
import csv, os, torch
from torch import nn
widths = {WIDTHS}
layers = []
for a, b in zip(widths, widths[1:]):
    layers += [nn.Linear(a, b), nn.ReLU()]
model = nn.Sequential(*layers[:-1])
model.load_state_dict(torch.load(os.environ["GRIDX_INIT_MODEL"], weights_only=True))
rows = list(csv.reader(open(os.environ["GRIDX_DATA"])))[1:]
x = torch.tensor([[float(v) for v in r[:64]] for r in rows]) / 16.0
y = torch.tensor([int(r[64]) for r in rows])
torch.manual_seed(int(os.environ["GRIDX_ROUND"]) * 1009 + int(os.environ["GRIDX_SHARD"]))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for _ in range(int(os.environ["GRIDX_EPOCHS"])):
    order = torch.randperm(len(x))
    for i in range(0, len(x), 32):
        opt.zero_grad()
        idx = order[i : i + 32]
        nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
torch.save(model.state_dict(), os.environ["GRIDX_OUTPUT"])
"""
CASES = {"off": None, "int8": "int8", "int4": "int4", "topk": "topk:0.01"}


def make_model() -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(WIDTHS):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def accuracy(path: Path) -> float:
    """The held-out accuracy of a model file on the digits test split, in points."""
    model = make_model()
    model.load_state_dict(torch.load(path, weights_only=True))
    with (DIGITS / "test.csv").open() as fh:
        rows = list(csv.reader(fh))[1:]
    x = torch.tensor([[float(v) for v in r[:64]] for r in rows]) / 16.0
    y = torch.tensor([int(r[64]) for r in rows])
    with torch.no_grad():
        return 100 * float((model(x).argmax(1) == y).float().mean())


def wait_for_nodes(cluster: LocalCluster, client: ApiClient, count: int) -> None:
    """Until `count` nodes are online (a node that died on the way stops the bench)."""
    deadline = time.monotonic() + 300
    while sum(n.status == "online" for n in client.nodes()) < count:
        cluster.check_nodes()
        if time.monotonic() > deadline:
            raise SystemExit("the nodes did not come online")
        time.sleep(0.5)


def run_job(
    client: ApiClient, work: Path, name: str, compress: str | None, args: argparse.Namespace
) -> dict[str, float]:
    """One job: seconds per round, bytes uploaded per round, held-out accuracy."""
    config = {"name": name, "rounds": args.rounds, "shards": args.nodes, "epochs": 1}
    config |= {"warm": False, "task_timeout_s": 1800} | ({"compress": compress} if compress else {})
    started = time.time()
    detail = client.submit(
        config, work / "train.py", None, DIGITS / "train.csv", work / "start.pth"
    )
    detail = watch(client, detail.job.id, quiet=True)
    if detail.job.status != "succeeded":
        raise SystemExit(f"{name}: job {detail.job.status}: {detail.job.error}")
    done = [r for r in detail.rounds if r.index >= 0]
    seconds = ((done[-1].finished_at or 0) / 1000 - started) / len(done)
    model = client.download(detail.job.id, "pth", work / f"{name}.pth")
    return {
        "s_per_round": round(seconds, 2),
        "bytes_per_round": detail.uploaded_bytes / len(done),
        "accuracy": round(accuracy(model), 2),
    }


def cut_every_upload(lab: WanLab, names: list[str], update: int, seconds: float) -> list[str]:
    """Cut each node's link for `seconds` once it has sent half an update (in threads)."""
    cut: list[str] = []
    base = {n: lab.traffic(n)[1] for n in names}

    def watch_node(name: str) -> None:
        while lab.traffic(name)[1] - base[name] < update // 2:
            time.sleep(0.05)
        lab.cut(name, seconds).join()
        cut.append(name)

    threads = [threading.Thread(target=watch_node, args=(n,), daemon=True) for n in names]
    for t in threads:
        t.start()
    return cut


def resume_case(
    client: ApiClient, lab: WanLab, work: Path, names: list[str], args: argparse.Namespace
) -> float:
    """Round with a 20 s cut in every node's upload: wire bytes up / the updates' bytes."""
    before = sum(lab.traffic(n)[1] for n in names)
    update = (work / "start.pth").stat().st_size
    cut = cut_every_upload(lab, names, update, args.cut_s)
    config = {"name": "cut", "rounds": 1, "shards": args.nodes, "epochs": 1, "warm": False}
    detail = client.submit(
        config, work / "train.py", None, DIGITS / "train.csv", work / "start.pth"
    )
    detail = watch(client, detail.job.id, quiet=True)
    if detail.job.status != "succeeded":
        raise SystemExit(f"cut: job {detail.job.status}: {detail.job.error}")
    wire = sum(lab.traffic(n)[1] for n in names) - before
    print(f"  cut     {len(cut)} of {len(names)} uploads cut for {args.cut_s:.0f} s, round done")
    return wire / detail.uploaded_bytes


def flower_case(lab: WanLab, work: Path, names: list[str], args: argparse.Namespace) -> float:
    """Seconds per round of the same model on Flower's deployment runtime, behind the links."""
    home = work / "flwr-home"
    home.mkdir()
    address = f"{lab.host}:9092"  # (Flower 1.42 serves its APIs on one HTTP port)
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "bench"\n\n[superlink.bench]\naddress = "{address}"\n'
        "insecure = true\n"
    )
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "FLWR_HOME": str(home), "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    logs = (work / "flower.log").open("ab")
    link = ["flower-superlink", "--insecure", "--disable-runtime-dependency-installation"]
    link += ["--host", lab.host, "--port", "9092"]
    daemons = [subprocess.Popen(link, env=env, stdout=logs, stderr=logs, start_new_session=True)]
    times = work / "flower-times.json"
    params = sum(p.numel() for p in make_model().parameters())
    try:
        time.sleep(3)
        for i, name in enumerate(names):
            node = ["flower-supernode", "--insecure", "--superlink", address]
            node += ["--node-config", f"partition-id={i}"]
            daemons.append(
                subprocess.Popen(
                    [*lab.argv(name), *node],
                    env=env,
                    stdout=logs,
                    stderr=logs,
                    start_new_session=True,
                )
            )
        config = f"times-file='{times}' num-rounds={args.rounds} params={params} "
        config += f"nodes={len(names)} random=1"
        run = ["flwr", "run", str(Path(__file__).parent / "flower_app"), "bench"]
        subprocess.run(
            [*run, "--run-config", config, "--stream"],
            env=env,
            stdout=logs,
            stderr=logs,
            timeout=7200,
            check=True,
        )
        ends = json.loads(times.read_text())
    finally:
        for d in daemons:
            d.kill()
            d.wait(10)
    return (ends[-1] - ends[0]) / (len(ends) - 1)


BIG_TRAIN = """\
import os, torch
model = torch.load(os.environ["GRIDX_INIT_MODEL"], weights_only=True, mmap=True)
torch.save({k: v + 1e-3 for k, v in model.items()}, os.environ["GRIDX_OUTPUT"])
"""


def peak_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def big_case(work: Path, gb: float) -> dict[str, float]:
    """One round of a `gb` GB model on 2 `datacenter` nodes: the peak memory of the coordinator
    (its own process and each pool worker) and of the nodes (their own process: a task runs in
    its sandbox), and the final model against a merge computed apart."""
    count = int(gb * 1e9 / 4 / 50_000_000)
    start = {f"layer{i:03d}": torch.full((50_000_000,), float(i)) for i in range(count)}
    torch.save(start, work / "big.pth")
    del start
    (work / "big_train.py").write_text(BIG_TRAIN)
    env = {"GRIDX_MAX_RESULT_BYTES": str(8 << 30)}
    with WanLab() as lab, LocalCluster(work / "big", env, host=lab.host) as cluster:
        client = ApiClient(cluster.url, cluster.api_key)
        for i, name in enumerate(("big-0", "big-1")):
            lab.add(name, "datacenter")
            memory = ("--memory-mb", str(int(3 * gb * 1000)))  # the task's own copies
            cluster.add_node(name, args=memory, launcher=(*lab.argv(name), sys.executable))
            wait_for_nodes(cluster, client, i + 1)
        config = {"name": "big", "rounds": 1, "shards": 2, "warm": False, "task_timeout_s": 3600}
        detail = client.submit(
            config, work / "big_train.py", None, DIGITS / "train.csv", work / "big.pth"
        )
        detail = watch(client, detail.job.id, quiet=True)
        if detail.job.status != "succeeded":
            raise SystemExit(f"big: job {detail.job.status}: {detail.job.error}")
        assert cluster.coordinator is not None
        coordinator = [cluster.coordinator.pid, *children(cluster.coordinator.pid)]
        nodes = [p.pid for p in cluster.nodes.values()]
        figures = {
            "coordinator_rss_mb": max(peak_mb(p) for p in coordinator),
            "node_rss_mb": max(peak_mb(p) for p in nodes),
        }
        final = client.download(detail.job.id, "safetensors", work / "big_final.safetensors")
        rows = [t.rows for t in sorted(detail.tasks, key=lambda t: t.shard) if t.kind == "train"]
    figures["final_matches"] = float(_sha256(final) == _merge_apart(work, rows))
    return figures


def _merge_apart(work: Path, rows: list[int]) -> str:
    """The sha256 of the final model the job should give: both nodes' updates made here and
    merged by the engine itself, outside the coordinator."""
    from gridx.coordinator.aggregation.engine import aggregate
    from gridx.coordinator.aggregation.work import AggregationJob
    from gridx.schemas.strategies import FedAvg

    apart = work / "apart"
    apart.mkdir()
    model = torch.load(work / "big.pth", weights_only=True, mmap=True)
    torch.save({k: v + 1e-3 for k, v in model.items()}, apart / "update.pth")
    clients = [(i, str(apart / "update.pth"), float(n)) for i, n in enumerate(rows)]
    job = AggregationJob(
        clients=clients,
        strategy=FedAvg(),
        out_dir=str(apart),
        max_bytes=1 << 40,
        base_model=str(work / "big.pth"),
    )
    return _sha256(Path(aggregate(job).model_safetensors or ""))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ratios(
    figures: dict[str, dict[str, float]], flower_s: float | None, profile: str
) -> dict[str, float]:
    """Each compressed case against `off` (and int8 against Flower), as the issue names them."""
    out: dict[str, float] = {}
    if "off" not in figures:
        return out
    off = figures["off"]
    for case in ("int8", "int4", "topk"):
        if case in figures:
            f = figures[case]
            out[f"bytes_ratio_{case}"] = round(f["bytes_per_round"] / off["bytes_per_round"], 4)
            out[f"gap_points_{case}"] = round(off["accuracy"] - f["accuracy"], 2)
    if "int8" in figures:
        int8_s = figures["int8"]["s_per_round"]
        out[f"speedup_int8_vs_off_{profile}"] = round(off["s_per_round"] / int8_s, 2)
        if flower_s is not None:
            out[f"speedup_int8_vs_flower_{profile}"] = round(flower_s / int8_s, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--profile", default="home")
    ap.add_argument("--cut-s", type=float, default=20.0)
    ap.add_argument("--big-gb", type=float, default=2.5)
    ap.add_argument("--cases", nargs="*", default=[*CASES, "cut", "flower", "big"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/wan.py needs root: network namespaces and tc")
    work = Path(tempfile.mkdtemp(prefix="gridx-bench-wan-"))
    (work / "train.py").write_text(TRAIN)
    torch.manual_seed(0)
    torch.save(make_model().state_dict(), work / "start.pth")
    size = (work / "start.pth").stat().st_size
    print(f"  model: {size / 1e6:.1f} MB; {args.nodes} nodes on {args.profile} links")
    out: dict[str, float] = {}
    figures: dict[str, dict[str, float]] = {}
    names = [f"node-{i}" for i in range(args.nodes)]
    with WanLab() as lab:
        with LocalCluster(work / "cluster", host=lab.host) as cluster:
            client = ApiClient(cluster.url, cluster.api_key)
            for i, name in enumerate(names):  # one at a time, as machines of their own start
                lab.add(name, args.profile)
                cluster.add_node(name, launcher=(*lab.argv(name), sys.executable))
                wait_for_nodes(cluster, client, i + 1)
            for case, compress in CASES.items():
                if case not in args.cases:
                    continue
                figures[case] = run_job(client, work, case, compress, args)
                f = figures[case]
                print(
                    f"  {case:6s} {f['s_per_round']:7.1f} s/round  "
                    f"{f['bytes_per_round'] / 1e6:8.1f} MB up/round  "
                    f"accuracy {f['accuracy']:.2f}",
                    flush=True,
                )
                out[f"s_per_round_{case}"] = f["s_per_round"]
                out[f"accuracy_{case}"] = f["accuracy"]
            if "cut" in args.cases:
                out["resume_bytes_ratio"] = round(resume_case(client, lab, work, names, args), 3)
                print(f"  cut     {out['resume_bytes_ratio']}x the updates' bytes on the wire")
        if "flower" in args.cases and importlib.util.find_spec("flwr") is not None:
            out["flower_s_per_round"] = round(flower_case(lab, work, names, args), 2)
            print(f"  Flower {out['flower_s_per_round']:7.1f} s/round", flush=True)
    if "big" in args.cases:
        big = big_case(work, args.big_gb)
        print(
            f"  {args.big_gb} GB model: coordinator peak {big['coordinator_rss_mb']:.0f} MB, "
            f"node peak {big['node_rss_mb']:.0f} MB, final model as merged apart: "
            f"{bool(big['final_matches'])}",
            flush=True,
        )
        gb = str(args.big_gb).replace(".", "p")
        out[f"coordinator_rss_mb_{gb}gb"] = round(big["coordinator_rss_mb"])
        out[f"node_rss_mb_{gb}gb"] = round(big["node_rss_mb"])
        out[f"final_sha256_matches_{gb}gb"] = big["final_matches"]
    out |= ratios(figures, out.get("flower_s_per_round"), args.profile)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

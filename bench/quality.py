"""Learning quality: federated accuracy against centralized training of the same script.

The bundled digits example, with `train.py` rewritten the ways real scripts seed (or do not):
from the job's seed as shipped, from the shard and round, from the clock, not at all, and one
that crashes when asked for zero epochs. Each runs as a real job (coordinator, 3 nodes, 3 shards)
in three modes: the initialisation step (the default), `--init-model`, and `--no-init-step` (the
old behaviour, every shard starting from its own weights), under FedAvg, FedProx and FedMedian.
The baseline is the same script trained centrally on all the data for the same total epochs,
measured in the same run; the figure is the gap in held-out accuracy points (federated minus
centralized).

A script that does not seed (or seeds from the clock) gives a different model on every run,
centrally too, so one run of each is a draw: `--trials N` runs the baseline and every cell N
times and compares the means (each cell's spread is printed beside it).

    python bench/quality.py [--rounds 6] [--epochs 5] [--trials 1] [--variants ...] [--modes ...]
Last line: {"cells": [...], "worst_gap_points": {"init_step": x, "init_model": y, "none": z}}
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import mean

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster
from gridx.coordinator.cli.demo import held_out, train_central
from gridx.coordinator.cli.progress import watch

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
SEEDED = "    torch.manual_seed(seed)  # the same initial model on every shard\n"
VARIANTS = {
    "seeded": lambda s: s,
    "shard_round": lambda s: s.replace(SEEDED, "    torch.manual_seed(1000 * rnd + shard + 1)\n"),
    "clock": lambda s: s.replace(SEEDED, "    torch.manual_seed(time.time_ns() % 2**31)\n").replace(
        "import json\n", "import json\nimport time\n"
    ),
    "unseeded": lambda s: s.replace(SEEDED, ""),
    # its metrics read the last batch's loss, which zero epochs never set (NameError)
    "no_zero_epochs": lambda s: s.replace(SEEDED, "").replace(
        '            "loss": float(loss_fn(logits, y)),', '            "loss": float(loss),'
    ),
}
STRATEGIES = {"fedavg": [], "fedprox": ["--param", "mu=0.01"], "fedmedian": []}
MODES = ("init_step", "init_model", "none")


def starting_model(work: Path) -> Path:
    """A fresh model of the example's architecture, saved as a state_dict."""
    path = work / "start.pth"
    code = (
        f"import sys, torch; sys.path.insert(0, {str(DIGITS)!r}); from train import make_model; "
        f"torch.manual_seed(123); torch.save(make_model().state_dict(), {str(path)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    return path


def run_cell(
    client: ApiClient,
    work: Path,
    script: Path,
    start: Path,
    args: argparse.Namespace,
    variant: str,
    mode: str,
    strategy: str,
    trial: int,
) -> float:
    """One federated job of a cell (seeded `trial`, as its baseline run); its held-out accuracy
    (NaN when the job failed)."""
    config = {
        "name": f"{variant}-{mode}-{strategy}",
        "rounds": args.rounds,
        "shards": args.shards,
        "epochs": args.epochs,
        "seed": trial,
        "init_step": mode == "init_step",
        "strategy": {"name": strategy} | ({"mu": 0.01} if strategy == "fedprox" else {}),
    }
    detail = client.submit(
        config, script, None, DIGITS / "data" / "train.csv", start if mode == "init_model" else None
    )
    detail = watch(client, detail.job.id, quiet=True)
    if detail.job.status != "succeeded":
        return float("nan")
    return held_out(DIGITS, client.download(detail.job.id, "pth", work / "fed.pth"))[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--modes", nargs="*", default=list(MODES))
    ap.add_argument("--strategies", nargs="*", default=list(STRATEGIES))
    ap.add_argument("--trials", type=int, default=1, help="runs of each cell and baseline")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gridx-quality-"))
    start = starting_model(work)
    cells = []
    with LocalCluster(work / "cluster") as cluster:
        for i in range(args.shards):
            cluster.add_node(f"node-{i}")
        client = ApiClient(cluster.url, cluster.api_key)
        for variant in args.variants:
            script = work / f"{variant}.py"
            script.write_text(VARIANTS[variant]((DIGITS / "train.py").read_text()))
            (work / variant).mkdir()
            base = mean(
                held_out(DIGITS, train_central(script, DIGITS / "data" / "train.csv",
                                               work / variant, args.rounds * args.epochs, t))[1]
                for t in range(args.trials)
            )  # fmt: skip
            for mode in args.modes:
                for strategy in args.strategies:
                    runs = [
                        run_cell(client, work, script, start, args, variant, mode, strategy, t)
                        for t in range(args.trials)
                    ]
                    fed = mean(runs)
                    gap = round((fed - base) * 100, 2)
                    cells.append(
                        {"variant": variant, "mode": mode, "strategy": strategy,
                         "federated": round(fed, 4), "central": round(base, 4), "gap_points": gap,
                         "runs": [round(r, 4) for r in runs]}
                    )  # fmt: skip
                    spread = (max(runs) - min(runs)) * 100
                    print(
                        f"{variant:>15} {mode:>10} {strategy:>9}: federated {fed * 100:6.2f}%  "
                        f"central {base * 100:6.2f}%  gap {gap:+6.2f} points "
                        f"(spread of {args.trials}: {spread:.2f})",
                        flush=True,
                    )
    worst = {
        m: min((c["gap_points"] for c in cells if c["mode"] == m), default=None) for m in args.modes
    }
    print(json.dumps({"cells": cells, "worst_gap_points": worst}))


if __name__ == "__main__":
    main()

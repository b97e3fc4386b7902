"""What central differential privacy costs the digits example: held-out accuracy at epsilon
about 1, 3 and 8 against the same job without DP (the baseline, run in the same bench).

The digits training set (1437 rows) is dealt to `--shards` shards (the clients; DP-FedAvg's noise
on the mean shrinks as 1 / clients, so it needs many), trained for `--rounds` rounds on two real
nodes. For each target epsilon the noise multiplier is the one for which `dp-accounting`'s RDP
accountant gives that epsilon after all rounds at delta = 1 / rows; every update is clipped to
`--clip` and the job reports the epsilon it spent. Accuracy is the example's own evaluate.py
on its test split.

    python bench/privacy.py [--rounds 5] [--shards 100] [--epochs 5] [--clip 1.0]
Last line: {"accuracy_no_dp": a, "accuracy_eps_1": b, "ratio_eps_1": b / a, ... 3, 8,
            "noise_multiplier_eps_1": z, "epsilon_spent_eps_1": e, ...}
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster
from gridx.coordinator.cli.demo import held_out
from gridx.coordinator.cli.progress import watch
from gridx.coordinator.services.privacy import epsilon

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
ROWS = 1437
TARGETS = (1.0, 3.0, 8.0)


def noise_for(target: float, rounds: int, delta: float) -> float:
    """The noise multiplier whose `rounds` rounds spend `target` epsilon (bisection)."""
    lo, hi = 0.3, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if epsilon(mid, rounds, delta) < target else (mid, hi)
    return hi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--clip", type=float, default=1.0)
    args = ap.parse_args()
    delta = 1.0 / ROWS
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(Path(tmp) / "c") as cluster:
        work = Path(tmp)
        for i in range(2):
            cluster.add_node(f"node-{i}", args=("--executor", "process"))
        client = ApiClient(cluster.url, cluster.api_key)
        base = {"rounds": args.rounds, "shards": args.shards, "epochs": args.epochs, "seed": 1}
        cases: list[tuple[str, dict[str, object]]] = [("no_dp", {})]
        for target in TARGETS:
            z = noise_for(target, args.rounds, delta)
            dp = {"noise_multiplier": z, "clip_norm": args.clip, "delta": delta}
            cases.append((f"eps_{target:g}", {"dp": dp}))
            out[f"noise_multiplier_eps_{target:g}"] = round(z, 3)
        for name, extra in cases:
            started = time.perf_counter()
            detail = client.submit(
                base | extra, DIGITS / "train.py", None, DIGITS / "data/train.csv", None
            )
            detail = watch(client, detail.job.id, quiet=True)
            if detail.job.status != "succeeded":
                raise SystemExit(f"{name}: job {detail.job.status}: {detail.job.error}")
            accuracy = held_out(DIGITS, client.download(detail.job.id, "pth", work / f"{name}.pth"))
            spent = detail.rounds[-1].epsilon
            out[f"accuracy_{name}"] = round(accuracy[1], 4)
            if spent is not None:
                out[f"epsilon_spent_{name}"] = round(spent, 3)
            label = "no DP" if spent is None else f"epsilon {spent:.2f} (delta 1/{ROWS})"
            seconds = time.perf_counter() - started
            print(f"  {label:28s} held-out accuracy {accuracy[1]:.4f}   ({seconds:.0f} s)")
    for target in TARGETS:
        key = f"eps_{target:g}"
        out[f"ratio_{key}"] = round(out[f"accuracy_{key}"] / out["accuracy_no_dp"], 3)
        print(f"  epsilon {target:g}: {out[f'ratio_{key}']:.3f}x the non-private accuracy")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

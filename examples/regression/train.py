"""Predict a building's energy use (kWh) from 8 readings with a small MLP: one Grid-X task (or
the whole job, run alone with `python train.py`).

The Grid-X contract, every variable with a default: GRIDX_DATA (CSV: 8 features + `kwh`),
GRIDX_INIT_MODEL (the round's global model, loaded whenever set), GRIDX_EPOCHS, GRIDX_SEED,
GRIDX_ROUND, GRIDX_SHARD, GRIDX_OUTPUT, GRIDX_METRICS, GRIDX_PROX_MU. Features are scaled by
fixed constants (not by this shard's statistics), so every shard feeds the model the same way.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
# typical magnitudes of temp, humidity, occupancy, hour, weekday, area, insulation, solar
SCALE = torch.tensor([35.0, 90.0, 40.0, 23.0, 6.0, 400.0, 1.0, 1000.0])
TARGET_SCALE = 100.0


def make_model() -> nn.Module:
    """8 readings -> 32 -> 32 -> kWh (scaled)."""
    return nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1)
    )


def load(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled features and scaled targets."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    x = torch.tensor([[float(v) for v in r[:8]] for r in rows]) / SCALE
    y = torch.tensor([[float(r[8])] for r in rows]) / TARGET_SCALE
    return x, y


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Coefficient of determination (1: perfect, 0: no better than the mean)."""
    return float(1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def main() -> None:
    data = os.environ.get("GRIDX_DATA", str(HERE / "data" / "train.csv"))
    epochs = int(os.environ.get("GRIDX_EPOCHS", "20"))
    rnd = int(os.environ.get("GRIDX_ROUND", "0"))
    shard = int(os.environ.get("GRIDX_SHARD", "0"))
    seed = int(os.environ.get("GRIDX_SEED", "0"))
    torch.manual_seed(seed * 7919 + rnd * 101 + shard)  # per task: Grid-X aligns the start
    torch.set_num_threads(1)
    model = make_model()
    init = os.environ.get("GRIDX_INIT_MODEL")
    if init:
        model.load_state_dict(torch.load(init, weights_only=True))
    mu = float(os.environ.get("GRIDX_PROX_MU", "0"))
    anchor = [p.detach().clone() for p in model.parameters()]
    x, y = load(data)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            if mu > 0:
                prox = sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + mu / 2 * prox
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(x)
        metrics = {
            "r2": r2(pred, y),
            "mse": float(nn.functional.mse_loss(pred, y)),
            "samples": len(y),
        }
    torch.save(model.state_dict(), os.environ.get("GRIDX_OUTPUT", "model.pth"))
    Path(os.environ.get("GRIDX_METRICS", "metrics.json")).write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()

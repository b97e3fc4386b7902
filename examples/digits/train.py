"""Train a small MLP on 8x8 handwritten digits: one Grid-X task (or the whole job, run alone).

Reads the Grid-X environment contract (every variable has a default, so `python train.py` works
by itself): GRIDX_DATA (CSV, 64 pixels + label), GRIDX_INIT_MODEL (the round's global model),
GRIDX_EPOCHS, GRIDX_SEED, GRIDX_ROUND, GRIDX_SHARD, GRIDX_OUTPUT, GRIDX_METRICS, and
GRIDX_PROX_MU (FedProx: a proximal term keeps local weights near the round's global model).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


def make_model() -> nn.Module:
    """64 pixels -> 64 hidden units -> 10 classes."""
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def load(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixels scaled to [0, 1] and integer labels."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    x = torch.tensor([[float(v) for v in r[:64]] for r in rows]) / 16.0
    y = torch.tensor([int(r[64]) for r in rows])
    return x, y


def main() -> None:
    data = os.environ.get("GRIDX_DATA", str(HERE / "data" / "train.csv"))
    epochs = int(os.environ.get("GRIDX_EPOCHS", "5"))
    rnd = int(os.environ.get("GRIDX_ROUND", "0"))
    shard = int(os.environ.get("GRIDX_SHARD", "0"))
    seed = int(os.environ.get("GRIDX_SEED", "0"))
    torch.manual_seed(seed)  # the same initial model on every shard
    torch.set_num_threads(1)
    model = make_model()
    init = os.environ.get("GRIDX_INIT_MODEL")
    if init:
        model.load_state_dict(torch.load(init, weights_only=True))
    mu = float(os.environ.get("GRIDX_PROX_MU", "0"))
    anchor = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(seed * 1_000_003 + rnd * 1009 + shard)  # shuffling differs per task
    x, y = load(data)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 32):
            idx = order[i : i + 32]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            if mu > 0:
                prox = sum(
                    ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True)
                )
                loss = loss + mu / 2 * prox
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(x)
        metrics = {
            "loss": float(loss_fn(logits, y)),
            "accuracy": float((logits.argmax(1) == y).float().mean()),
        }
    torch.save(model.state_dict(), os.environ.get("GRIDX_OUTPUT", "model.pth"))
    Path(os.environ.get("GRIDX_METRICS", "metrics.json")).write_text(json.dumps(metrics))
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()

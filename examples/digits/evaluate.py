"""Held-out accuracy of a digits model: `python evaluate.py MODEL.pth [TEST.csv]` prints JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import load, make_model


def evaluate(model_path: str | Path, test_csv: str | Path) -> dict[str, float]:
    """Accuracy and loss of the state_dict at `model_path` on `test_csv`."""
    model = make_model()
    model.load_state_dict(torch.load(model_path, weights_only=True))
    model.eval()
    x, y = load(test_csv)
    with torch.no_grad():
        logits = model(x)
    return {
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "loss": float(torch.nn.functional.cross_entropy(logits, y)),
        "samples": float(len(y)),
    }


if __name__ == "__main__":
    # `python evaluate.py MODEL [TEST]` by hand, or a Grid-X held-out evaluation
    # (GRIDX_MODEL, GRIDX_DATA, GRIDX_METRICS)
    here = Path(__file__).resolve().parent
    model = sys.argv[1] if len(sys.argv) > 1 else os.environ["GRIDX_MODEL"]
    test = (
        sys.argv[2]
        if len(sys.argv) > 2
        else os.environ.get("GRIDX_DATA", here / "data" / "test.csv")
    )
    result = evaluate(model, test)
    if "GRIDX_METRICS" in os.environ:
        Path(os.environ["GRIDX_METRICS"]).write_text(json.dumps(result))
    print(json.dumps(result))

"""The server: every round, send the model to every node, average what comes back (FedAvg with
equal weights), and record the time each round ends in `times-file`."""

from __future__ import annotations

import json
import time

import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    nodes = int(cfg["nodes"])
    while len(node_ids := list(grid.get_node_ids())) < nodes:
        time.sleep(0.1)
    # random values where links are shaped (zeros would shrink to nothing in a compressed
    # transport); zeros by default, as bench/rounds.py's figures were taken with
    params = int(cfg["params"])
    state = {"w": torch.randn(params) if int(cfg["random"]) else torch.zeros(params)}
    ends = []
    for _ in range(int(cfg["num-rounds"])):
        arrays = ArrayRecord(state)
        messages = [
            Message(content=RecordDict({"arrays": arrays}), message_type="train", dst_node_id=n)
            for n in node_ids[:nodes]
        ]
        replies = [
            r.content["arrays"].to_torch_state_dict() for r in grid.send_and_receive(messages)
        ]
        state = {k: torch.stack([r[k] for r in replies]).mean(0) for k in state}
        ends.append(time.time())
    with open(str(cfg["times-file"]), "w") as fh:
        json.dump(ends, fh)

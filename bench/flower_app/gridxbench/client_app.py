"""The client: the round's model plus 1e-3 on every tensor, as Grid-X's bench train.py does."""

from __future__ import annotations

import torch  # noqa: F401  (ArrayRecord converts only when torch is imported)
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    state = msg.content["arrays"].to_torch_state_dict()
    updated = {k: v + 1e-3 for k, v in state.items()}
    content = RecordDict(
        {"arrays": ArrayRecord(updated), "metrics": MetricRecord({"num-examples": 1})}
    )
    return Message(content=content, reply_to=msg)

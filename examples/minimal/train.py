"""The smallest job Grid-X can run: a script that knows nothing of Grid-X and writes model.pth."""

import torch

torch.manual_seed(0)
model = torch.nn.Linear(4, 2)
torch.save(model.state_dict(), "model.pth")
print("saved model.pth")

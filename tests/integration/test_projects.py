"""Real training code as people write it, on real nodes: a project of several files (a package
with the model and a data-loading helper) submitted as a folder with the CLI, a DataLoader with
two worker processes and a multiprocessing Queue in the task, an evaluation that imports the
same package; warm and cold. And what a machine can catch at submit is refused at submit."""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path

import pytest
import torch

from gridx.coordinator.cli.cluster import LocalCluster
from tests.integration.conftest import Client, gridx

MODEL = """
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x)
"""
DATA = """
import csv
import torch

def rows(path):
    with open(path) as fh:
        table = [r for r in csv.DictReader(fh)]
    x = torch.tensor([[float(r["x1"]), float(r["x2"])] for r in table])
    y = torch.tensor([int(r["label"]) for r in table])
    return torch.utils.data.TensorDataset(x, y)
"""
TRAIN = """
import multiprocessing as mp
import os

import torch

from mypkg.data import rows
from mypkg.model import Net


def square(q, i):
    q.put(i * i)


if __name__ == "__main__":
    torch.manual_seed(int(os.environ["GRIDX_SEED"]))
    net = Net()
    start = os.environ.get("GRIDX_INIT_MODEL")
    if start:
        net.load_state_dict(torch.load(start, weights_only=True))
    q = mp.Queue()
    helpers = [mp.Process(target=square, args=(q, i)) for i in (2, 3)]
    for p in helpers:
        p.start()
    squares = sorted(q.get(timeout=60) for _ in helpers)
    for p in helpers:
        p.join()
    loader = torch.utils.data.DataLoader(
        rows(os.environ["GRIDX_DATA"]), batch_size=16, shuffle=True, num_workers=2
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    seen = 0
    for _ in range(int(os.environ["GRIDX_EPOCHS"])):
        for x, y in loader:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            seen += len(y)
    torch.save(net.state_dict(), os.environ["GRIDX_OUTPUT"])
    import json
    held = {"seen": seen, "squares_ok": float(squares == [4, 9])}
    json.dump(held, open(os.environ["GRIDX_METRICS"], "w"))
"""
EVALUATE = """
import json
import os

import torch

from mypkg.data import rows
from mypkg.model import Net

net = Net()
net.load_state_dict(torch.load(os.environ["GRIDX_MODEL"], weights_only=True))
x, y = rows(os.environ["GRIDX_DATA"]).tensors
accuracy = float((net(x).argmax(1) == y).float().mean())
json.dump({"accuracy": accuracy}, open(os.environ["GRIDX_METRICS"], "w"))
"""


def _table(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    lines = ["x1,x2,label"]
    for _ in range(n):
        label = rng.randint(0, 1)
        x1, x2 = rng.gauss(2 * label - 1, 0.5), rng.gauss(1 - 2 * label, 0.5)
        lines.append(f"{x1:.4f},{x2:.4f},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _project(root: Path) -> Path:
    folder = root / "project"
    (folder / "mypkg").mkdir(parents=True)
    (folder / "mypkg" / "__init__.py").write_text("")
    (folder / "mypkg" / "model.py").write_text(MODEL)
    (folder / "mypkg" / "data.py").write_text(DATA)
    (folder / "train.py").write_text(TRAIN)
    (folder / "scratch").mkdir()
    (folder / "scratch" / "notes.py").write_text("this is not python (and is ignored)\n")
    (folder / ".gridxignore").write_text("# what the job does not need\nscratch/\n")
    os.symlink("/etc/hostname", folder / "host-link")  # links are never shipped
    return folder


@pytest.mark.parametrize("warm", ["--warm", "--no-warm"])
def test_a_project_folder_with_dataloader_workers_trains_to_the_end(
    cluster: LocalCluster, client: Client, tmp_path: Path, warm: str
) -> None:
    cluster.add_node("node-a")
    client.wait_for_nodes(1)
    folder = _project(tmp_path)
    data = _table(folder / "train.csv", 400, 1)  # inside the folder: sent as data, not code
    test = _table(tmp_path / "test.csv", 200, 2)
    (tmp_path / "evaluate.py").write_text(EVALUATE)
    out = gridx(
        cluster, "job", "submit", str(folder), "--data", str(data), "--shards", "2",
        "--rounds", "2", "--epochs", "2", "--evaluate", str(tmp_path / "evaluate.py"),
        "--test-data", str(test), warm, "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    job_id = json.loads(out.stdout)["id"]
    body = client.wait_done(job_id, 300)
    assert body["job"]["status"] == "succeeded", (body["job"]["error"], body["tasks"])
    assert body["config"]["entry"] == "train.py"
    # the last round's evaluation may finish after the job did
    body = client.wait(job_id, lambda b: b["rounds"][-1]["held_out"] is not None, 120)
    last = body["rounds"][-1]
    assert last["metrics"]["squares_ok"] == 1.0 and last["metrics"]["seen"] == 400  # 200 x 2
    assert last["held_out"]["accuracy"] > 0.9, last
    model = client.http.get(f"/jobs/{job_id}/model")
    state = torch.load(io.BytesIO(model.content), weights_only=True)
    assert set(state) == {"fc.weight", "fc.bias"}


def test_mistakes_a_machine_can_catch_are_refused_at_submit(
    cluster: LocalCluster, client: Client, tmp_path: Path
) -> None:
    cluster.add_node("node-a")  # its torch is the fleet's
    client.wait_for_nodes(1)
    torch_version = torch.__version__.split("+")[0]
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\ndef train(:\n    pass\n")
    good = tmp_path / "good.py"
    good.write_text("print('fine')\n")
    folder = _project(tmp_path)
    (folder / "mypkg" / "model.py").write_text("class Net(\n")
    options, pin = tmp_path / "options.txt", tmp_path / "pin.txt"
    options.write_text("numpy\n--index-url http://example.invalid/simple\n")
    pin.write_text("torch==2.5.0\n")
    cases = {
        "syntax": ([str(broken)], "train.py:2", "train_py"),
        "project": ([str(folder)], "mypkg/model.py does not compile", "project"),
        "entry": ([str(_project(tmp_path / "other")), "--entry", "main.py"], "no main.py", None),
        "sibling": ([str(_project(tmp_path / "lone") / "train.py")], "imports mypkg, which", None),
        "option": ([str(good), "--requirements", str(options)], "line 2: options", "requirements"),
        "torch": (
            [str(good), "--requirements", str(pin)],
            f"provide torch {torch_version}",
            "requirements",
        ),
    }
    for name, (args, words, field) in cases.items():
        out = gridx(cluster, "job", "submit", *args, "--json")
        assert out.returncode != 0 and words in out.stderr, (name, out.stderr)
        if field is not None:
            # an option is named as typed; the file given as the argument by the API's name
            shown = "(--requirements)" if field == "requirements" else f"(field `{field}`)"
            assert shown in out.stderr, (name, out.stderr)
    # refused at submit: nothing was queued to fail on a node later
    listed = gridx(cluster, "job", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []

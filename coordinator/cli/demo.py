"""`gridx demo`: a real federated job on this machine, next to a centrally trained baseline."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import click

from gridx.coordinator.cli.client import ApiClient
from gridx.coordinator.cli.cluster import LocalCluster, NodeDied
from gridx.coordinator.cli.progress import last_failure, watch
from gridx.coordinator.cli.screen import clean
from gridx.schemas.jobs import JobConfig, JobDetail
from gridx.schemas.nodes import NodeInfo

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEMOS = {
    "digits": "an MLP on 8x8 handwritten digits (classification)",
    "regression": "an MLP predicting a building's energy use from 8 readings (regression)",
}


def held_out(example: Path, model: Path) -> tuple[str, float]:
    """The example's own `evaluate.py` on its test split: its headline metric (the first key of
    the JSON it prints) and the value."""
    out = subprocess.run(
        [
            sys.executable,
            str(example / "evaluate.py"),
            str(model),
            str(example / "data" / "test.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    name, value = next(iter(json.loads(out.stdout.strip().splitlines()[-1]).items()))
    return str(name), float(value)


def train_central(script: Path, data: Path, workdir: Path, epochs: int, seed: int) -> Path:
    """The same script on all the training data in one process: the baseline."""
    model = workdir / "central_model.pth"
    env = {
        **os.environ,
        "GRIDX_DATA": str(data),
        "GRIDX_EPOCHS": str(epochs),
        "GRIDX_SEED": str(seed),
        "GRIDX_OUTPUT": str(model),
        "GRIDX_METRICS": str(workdir / "central_metrics.json"),
    }
    subprocess.run(
        [sys.executable, str(script)], env=env, cwd=workdir, check=True, capture_output=True
    )
    return model


def _show(name: str, value: float) -> str:
    return f"{value * 100:.2f}%" if name == "accuracy" else f"{value:.4f}"


def _node_args() -> tuple[str, ...]:
    """The demo's nodes run only its own example, for a coordinator nobody else can reach, so
    they take work under a weak sandbox too; where bubblewrap does not work, with the sandbox
    off (the weaker ones drop a root node's task to `nobody`, who cannot read a Python under
    a 0700 home, as this one may be)."""
    found = subprocess.run(
        [sys.executable, "-m", "gridx.node", "sandbox"], capture_output=True, text=True
    ).stdout.strip()
    weak = ("--allow-weak-sandbox",)
    return weak if found == "bubblewrap" else (*weak, "--sandbox", "off")


def _wait_for_nodes(client: ApiClient, cluster: LocalCluster, count: int) -> list[NodeInfo]:
    """Block until `count` nodes registered (each runs its sandbox self-test first).

    Raises:
        NodeDied: a node stopped on its way.
    """
    deadline = time.monotonic() + 120
    while True:
        cluster.check_nodes()
        nodes = client.nodes()
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"{count - len(nodes)} node(s) did not register within 120 s; see their logs "
                f"in {cluster.root}"
            )
        time.sleep(0.2)


def _say_sandbox(nodes: list[NodeInfo]) -> None:
    weak = [n for n in nodes if n.capabilities.sandbox != "strong"]
    if weak:
        caps = weak[0].capabilities
        click.echo(
            f"note: no strong sandbox here (the nodes measured {caps.sandbox!r}, "
            f"{caps.isolation}): the demo runs its own example anyway; before lending this "
            "machine to other people's jobs: sudo apt-get install bubblewrap"
        )


def _federated(
    root: Path, example: Path, name: str, rounds: int, num_nodes: int, epochs: int
) -> tuple[JobDetail, Path]:
    """Run the example's job on a local coordinator and `num_nodes` nodes; its final detail and
    model (not downloaded when the job failed).

    Raises:
        NodeDied: a node stopped before the job ended (the demo would wait for ever).
    """
    model = root / "final_model.pth"
    with LocalCluster(root, executor="auto") as cluster:
        click.echo(f"coordinator up at {cluster.url}")
        args = _node_args()
        for i in range(num_nodes):
            cluster.add_node(f"node-{i + 1}", args=args)
        client = ApiClient(cluster.url, cluster.api_key)
        _say_sandbox(_wait_for_nodes(client, cluster, num_nodes))
        config = JobConfig(name=f"{name}-demo", rounds=rounds, shards=num_nodes, epochs=epochs)
        detail = client.submit(
            config,
            example / "train.py",
            example / "requirements.txt",
            example / "data" / "train.csv",
        )
        job_id = detail.job.id
        click.echo(
            f"submitted {job_id}: {rounds} rounds x {num_nodes} shards, {epochs} local epochs"
        )
        detail = watch(client, job_id, check=cluster.check_nodes)
        if detail.job.status == "succeeded":
            client.download(job_id, "pth", model)
            client.download(job_id, "safetensors", root / "final_model.safetensors")
    return detail, model


def _died(died: NodeDied, root: Path) -> str:
    """What the demo says when a node stopped: its log's end and the command that fixes it."""
    fix = re.search(r"apt-get install [\w.+-]+", died.log_tail)
    how = f"sudo {fix.group()}" if fix else "fix what its log says"
    tail = "\n".join(f"  {clean(x)}" for x in died.log_tail.splitlines())
    return (
        f"{died}; its log ends with:\n{tail}\n"
        f"to fix: {how}, then run the demo again (its files are kept in {root})"
    )


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM ends the demo as Ctrl-C does: through the `finally`s that stop its processes."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _compare(
    root: Path, example: Path, model: Path, detail: JobDetail, fed_wall: float, keep: bool
) -> None:
    """Train the centralized baseline and print both held-out scores (and a JSON line)."""
    config = detail.config
    click.echo("training the centralized baseline (same script, all data, same total epochs)...")
    central = train_central(
        example / "train.py",
        example / "data" / "train.csv",
        root,
        config.rounds * config.epochs,
        config.seed,
    )
    metric, fed = held_out(example, model)
    _, base = held_out(example, central)
    if keep:
        click.echo(f"final model: {model} (and .safetensors)")
    click.echo(f"held-out {metric}, federated ({config.shards} nodes): {_show(metric, fed)}")
    click.echo(f"held-out {metric}, centralized baseline:   {_show(metric, base)}")
    click.echo(f"gap: {(fed - base) * 100:+.2f} points")
    summary = {
        "job": detail.job.id,
        "metric": metric,
        "federated": round(fed, 4),
        "central": round(base, 4),
        "gap_points": round((fed - base) * 100, 2),
        "seconds": round(fed_wall, 1),
    }
    click.echo(json.dumps(summary))


def run_demo(rounds: int, num_nodes: int, epochs: int, keep: bool, name: str = "digits") -> int:
    """Start a coordinator and nodes, run the example's job, compare it with centralized
    training, stop everything (also on Ctrl-C and SIGTERM).

    Returns:
        The process exit code (0 when the job succeeded).
    """
    example = EXAMPLES / name
    if not (example / "train.py").exists():
        raise click.ClickException(
            f"the {name} example is not at {example}; run the demo from a clone of the repository"
        )
    root = Path(tempfile.mkdtemp(prefix="gridx-demo-"))
    click.echo(f"Grid-X demo: coordinator + {num_nodes} nodes on 127.0.0.1 (files in {root})")
    click.echo(f"example {name}: {DEMOS[name]}")
    started = time.monotonic()
    succeeded = False
    try:
        with _sigterm_exits():
            detail, model = _federated(root, example, name, rounds, num_nodes, epochs)
            if detail.job.status != "succeeded":
                msg = f"job {detail.job.status}: {detail.job.error}\n{last_failure(detail)}"
                click.echo(msg, err=True)
                return 1
            fed_wall = time.monotonic() - started
            used = len({t.node_id for t in detail.tasks if t.node_id})
            click.echo(f"job {detail.job.id} succeeded in {fed_wall:.1f}s on {used} node(s)")
            _compare(root, example, model, detail, fed_wall, keep)
        succeeded = True
        return 0
    except NodeDied as died:
        click.echo(_died(died, root), err=True)
        return 1
    except (KeyboardInterrupt, SystemExit) as stop:
        click.echo("\ninterrupted: the demo's coordinator and nodes are stopped", err=True)
        return stop.code if isinstance(stop, SystemExit) and isinstance(stop.code, int) else 130
    finally:
        if keep or not succeeded:
            click.echo(f"kept {root} (the logs, the coordinator's data, the models)", err=True)
        else:
            shutil.rmtree(root, ignore_errors=True)
            click.echo(f"removed {root} (--keep keeps the final model and the logs)", err=True)

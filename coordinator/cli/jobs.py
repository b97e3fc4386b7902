"""`gridx job`: submit, list, follow, cancel and download jobs."""

from __future__ import annotations

from pathlib import Path

import click

from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.job_specs import (
    partition_spec,
    privacy_spec,
    replicas_spec,
    strategy_spec,
)
from gridx.coordinator.cli.logs import job_logs
from gridx.coordinator.cli.options import client_options, destination, json_option, when
from gridx.coordinator.cli.progress import last_failure, watch
from gridx.coordinator.cli.project import pack, sibling_imports
from gridx.coordinator.cli.screen import line
from gridx.coordinator.cli.views import job_download, job_status
from gridx.schemas.agent import SANDBOX_LEVELS
from gridx.schemas.jobs import FINISHED
from gridx.schemas.projects import DEFAULT_ENTRY
from gridx.schemas.strategies import STRATEGY_NAMES


@click.group()
def job() -> None:
    """Submit and follow jobs."""


@job.command("submit")
@click.argument("train_py", metavar="PATH", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--entry",
    help="With a folder (or a zip of one): the script to run, at its top level [train.py].",
)
@click.option("--requirements", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dataset: a table or JSON Lines is split into shards by rows, an archive by file.",
)
@click.option(
    "--init-model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Starting model for every shard (.pth state_dict or .safetensors).",
)
@click.option(
    "--evaluate",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Held-out evaluation script, run on each round's model (needs --test-data).",
)
@click.option(
    "--test-data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Test data for --evaluate (GRIDX_DATA of the evaluation, never sharded).",
)
@click.option("--name", default="", help="Job name.")
@click.option("--rounds", default=1, show_default=True, type=int)
@click.option("--shards", default=2, show_default=True, type=int, help="Tasks per round.")
@click.option("--epochs", default=1, show_default=True, type=int, help="Local epochs per task.")
@click.option(
    "--strategy",
    default="fedavg",
    show_default=True,
    type=click.Choice(STRATEGY_NAMES),
    help="How updates are merged.",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Strategy parameter, repeatable: mu, eta, beta1, beta2, tau, server_lr, momentum, "
    "nesterov, beta, f, m, clip_norm.",
)
@click.option(
    "--timeout",
    "task_timeout_s",
    default=600,
    show_default=True,
    type=int,
    help="Seconds a task may run.",
)
@click.option(
    "--max-attempts",
    default=3,
    show_default=True,
    type=int,
    help="Tries of your code per shard and round.",
)
@click.option(
    "--max-node-losses",
    default=5,
    show_default=True,
    type=int,
    help="Times a shard may be lost with its node before the job fails.",
)
@click.option(
    "--replicas",
    default=1,
    type=str,
    show_default=True,
    callback=lambda _ctx, _param, value: replicas_spec(value),
    help="Train each shard on this many nodes of different owners; keep what a majority agrees "
    "on. adaptive: check a node's results on a second node until it has earned trust.",
)
@click.option(
    "--replica-tolerance",
    default=1e-3,
    show_default=True,
    type=float,
    help="Largest relative L2 distance at which two copies agree.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--partition",
    default="iid",
    show_default=True,
    help="How a table or JSON Lines dataset is split: iid, by_column:COLUMN (one group per "
    "shard, never split) or dirichlet:COLUMN[:ALPHA] (label skew; seeded by --seed).",
)
@click.option(
    "--init-step/--no-init-step",
    default=True,
    show_default=True,
    help="Without --init-model: first run train.py once (GRIDX_INIT=1) and start every shard "
    "from its model.",
)
@click.option(
    "--min-sandbox",
    type=click.Choice(SANDBOX_LEVELS),
    default="none",
    show_default=True,
    help="Run only on nodes whose measured sandbox is at least this (weak, strong).",
)
@click.option(
    "--backup-tasks",
    is_flag=True,
    help="Give a second copy of a round's straggling task to an idle node; first result wins.",
)
@click.option(
    "--min-fraction",
    type=float,
    default=1.0,
    show_default=True,
    help="With --round-deadline: close a round once this fraction of its shards is in.",
)
@click.option(
    "--round-deadline",
    "round_deadline_s",
    type=int,
    help="Seconds after a round opens from which --min-fraction may close it.",
)
@click.option(
    "--mode",
    type=click.Choice(["sync", "async"]),
    help="sync: rounds that wait for their shards [default]; async (FedBuff): nothing waits, "
    "a server step every --buffer updates, --rounds counts steps.",
)
@click.option("--buffer", type=int, help="Async: updates per server step [half the shards].")
@click.option(
    "--staleness-exponent",
    type=float,
    help="Async: an update s steps behind weighs (1+s)^-A [0.5: 1/sqrt(1+s)].",
)
@click.option("--max-staleness", type=int, help="Async: drop updates more steps behind than this.")
@click.option(
    "--eval-every", type=int, help="With --evaluate: every this many rounds or steps, and the last."
)
@click.option(
    "--warm/--no-warm",
    default=True,
    show_default=True,
    help="Run the job's tasks on a node in one warm sandboxed runner that imports --preload "
    "once and forks each task (--no-warm: a fresh interpreter per task).",
)
@click.option(
    "--preload",
    default="torch,numpy",
    show_default=True,
    callback=lambda _ctx, _param, value: [m for m in value.split(",") if m],
    help="Modules the warm runner imports once, comma-separated.",
)
@click.option(
    "--dataset",
    help="Train on the dataset of this name that nodes hold (no --data: it never leaves them); "
    "one task per node each round (`gridx datasets` lists them).",
)
@click.option(
    "--keep-rounds",
    type=int,
    help="Merged rounds whose model an ended job keeps, the last ones [1] (job download --round).",
)
@click.option(
    "--holder",
    "holders",
    multiple=True,
    metavar="EMAIL",
    callback=lambda _ctx, _param, value: list(value) or None,
    help="With --dataset: also accept the copies held by this owner's nodes (repeatable); "
    "by default only your own nodes' copies join.",
)
@click.option(
    "--min-memory-mb",
    type=int,
    help="Run only on nodes that give a task at least this much memory (MiB) [any].",
)
@click.option("--min-nodes", type=int, help="With --dataset: nodes a round waits for [1].")
@click.option("--max-nodes", type=int, help="With --dataset: nodes a round trains on at most [64].")
@click.option(
    "--max-weight", type=int, help="With --dataset: cap on a node's sample weight (its rows)."
)
@click.option(
    "--dp",
    metavar="K=V,...",
    help="Central differential privacy: noise_multiplier=Z,clip_norm=C[,delta=D]"
    "[,max_epsilon=E][,client_clip=1].",
)
@click.option(
    "--compress",
    metavar="int8|int4|topk:F",
    help="Nodes send their update compressed: int8 (~0.26x the bytes), int4 (~0.13x), or "
    "topk:F (the fraction F of the values that changed most, e.g. topk:0.01) [whole models].",
)
@click.option("--wait", is_flag=True, help="Follow the job and download the model when done.")
@click.option(
    "--out",
    type=click.Path(),  # (a str: "models/" keeps the slash that says it is a folder)
    default=".",
    show_default=True,
    help="Where --wait saves the final model: a file, or a folder to write final_model.pth in "
    "(as for `job download --out`).",
)
@client_options
@json_option
def job_submit(
    train_py: Path,
    requirements: Path | None,
    data: Path | None,
    init_model: Path | None,
    evaluate: Path | None,
    test_data: Path | None,
    partition: str,
    strategy: str,
    params: tuple[str, ...],
    dp: str | None,
    wait: bool,
    out: str,
    client: ApiClient,
    as_json: bool,
    **config: object,
) -> None:
    """Submit PATH (+ requirements and data) as a federated job. PATH is a train.py, or a
    folder (a project: its files go as one archive, less what its .gridxignore lists, and the
    --entry script runs in it as `python train.py` runs there)."""
    if bool(evaluate) != bool(test_data):
        raise click.UsageError("--evaluate and --test-data go together")
    others = tuple(p for p in (requirements, data, init_model, evaluate, test_data) if p)
    code, packed = _code(train_py, config, others)
    try:
        detail = client.submit(
            {
                **{k: v for k, v in config.items() if v is not None},
                "strategy": strategy_spec(strategy, params),
                "partition": partition_spec(partition),
                **({"dp": privacy_spec(dp)} if dp else {}),
            },
            code,
            requirements,
            data,
            init_model,
            (evaluate, test_data) if evaluate and test_data else None,
            progress=not as_json,
        )
    finally:
        if packed is not None:
            packed.unlink(missing_ok=True)
    job_id = detail.job.id
    if not wait:
        click.echo(to_json(detail.job) if as_json else job_id)
        return
    if not as_json:
        click.echo(f"submitted {job_id}", err=True)
    detail = watch(client, job_id, quiet=as_json)
    if detail.job.status != "succeeded":
        raise click.ClickException(
            f"job {job_id} {detail.job.status}: {detail.job.error or ''}\n{last_failure(detail)}"
        )
    path = client.download(job_id, "pth", destination(out, "final_model.pth"))
    if as_json:
        click.echo(to_json({"job": detail.job, "rounds": detail.rounds, "model": str(path)}))
    else:
        click.echo(f"final model: {path}")


@job.command("list")
@client_options
@json_option
def job_list(client: ApiClient, as_json: bool) -> None:
    """Your jobs, newest first."""
    rows = client.jobs()
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no jobs yet: `gridx job submit train.py --data data.csv --wait`")
        return
    click.echo(f"{'ID':<16} {'STATUS':<11} {'ROUND':>7} {'TASKS':>9}  {'CREATED':<19}  NAME")
    for j in rows:  # an async job's rounds are server steps: "s3/20"
        rnd = f"{'s' if j.mode == 'async' else ''}{min(j.current_round + 1, j.rounds)}/{j.rounds}"
        line(
            f"{j.id:<16} {j.status:<11} {rnd:>7} {j.tasks_done:>4}/{j.tasks_total:<4}  "
            f"{when(j.created_at):<19}  {j.name}"
        )


def _code(
    path: Path, config: dict[str, object], others: tuple[Path, ...]
) -> tuple[Path, Path | None]:
    """What to send as the job's code (a folder packed as a project, its `entry` set in
    `config`), and the temporary archive to delete afterwards, if one was made."""
    entry = str(config.get("entry") or DEFAULT_ENTRY)
    if path.is_dir():
        config["entry"] = entry
        packed = pack(path, entry, others)
        return packed, packed
    if config.get("entry") and path.suffix != ".zip":
        raise click.UsageError("--entry names the script of a project: give a folder as PATH")
    if path.suffix != ".zip" and (beside := sibling_imports(path)):
        raise click.UsageError(
            f"{path.name} imports {', '.join(beside)}, which sit(s) beside it and would not be "
            f"sent: submit the folder instead (gridx job submit {path.parent} ...)"
        )
    return path, None


@job.command("watch")
@click.argument("job_id")
@client_options
@json_option
def job_watch(job_id: str, client: ApiClient, as_json: bool) -> None:
    """Follow a job already submitted, a bar per round, until it ends (exit 1 unless it
    succeeded)."""
    detail = watch(client, job_id, quiet=as_json)
    if as_json:
        click.echo(to_json({"job": detail.job, "rounds": detail.rounds}))
    if detail.job.status != "succeeded":
        raise click.ClickException(
            f"job {job_id} {detail.job.status}: {detail.job.error or ''}\n{last_failure(detail)}"
        )
    if not as_json:
        click.echo(f"job {job_id} succeeded: `gridx job download {job_id}`")


for command in (job_logs, job_status, job_download):
    job.add_command(command)


@job.command("cancel")
@click.argument("job_id")
@client_options
@json_option
def job_cancel(job_id: str, client: ApiClient, as_json: bool) -> None:
    """Cancel an unfinished job."""
    j = client.cancel(job_id)
    click.echo(to_json(j) if as_json else f"{j.id} {j.status}")


@job.command("delete")
@click.argument("job_id")
@click.option("--yes", is_flag=True, help="Do not ask.")
@client_options
@json_option
def job_delete(job_id: str, yes: bool, client: ApiClient, as_json: bool) -> None:
    """Delete an ended job and every file only it used (its final model too)."""
    status = client.job(job_id).job.status  # a job that still runs is refused before asking
    if status not in FINISHED:
        raise click.ClickException(
            f"job {job_id} is {status}: only an ended job can be deleted; "
            f"`gridx job cancel {job_id}` first"
        )
    if not yes and not as_json:
        click.confirm(f"delete {job_id} and its final model for good?", abort=True)
    client.call("DELETE", f"/jobs/{job_id}", type(None))
    click.echo(to_json({"id": job_id, "deleted": True}) if as_json else f"{job_id} deleted")

"""`gridx`: run the coordinator, manage users, submit and follow jobs, list nodes, run the demo."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import sys
from pathlib import Path

import click
import msgspec

from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.progress import FINISHED, format_metrics, last_failure, watch
from gridx.schemas.agent import SANDBOX_LEVELS
from gridx.schemas.jobs import INIT_ROUND, STRATEGY_NAMES, JobConfig

url_option = click.option(
    "--url",
    envvar="GRIDX_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="Coordinator URL [GRIDX_URL].",
)
key_option = click.option(
    "--api-key", envvar="GRIDX_API_KEY", required=True, help="Your API key [GRIDX_API_KEY]."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="GRIDX_DATA_DIR",
    default="gridx-data",
    show_default=True,
    help="Coordinator data folder [GRIDX_DATA_DIR].",
)


def _strategy(name: str, params: tuple[str, ...]) -> dict[str, object]:
    """`--strategy krum --param f=1` as the config's strategy object."""
    out: dict[str, object] = {"name": name}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError as exc:
            raise click.BadParameter(
                f"{item!r}: value must be a number", param_hint="--param"
            ) from exc
    return out


def _partition(spec: str) -> dict[str, object]:
    """`iid`, `by_column:COLUMN` or `dirichlet:COLUMN[:ALPHA]` as the config's partition."""
    name, _, rest = spec.partition(":")
    if name == "iid" and not rest:
        return {"name": "iid"}
    column, _, alpha = rest.partition(":")
    if name == "by_column" and column and not alpha:
        return {"name": name, "column": column}
    if name == "dirichlet" and column:
        try:
            return {"name": name, "column": column, **({"alpha": float(alpha)} if alpha else {})}
        except ValueError as exc:
            raise click.BadParameter(
                f"alpha {alpha!r} is not a number", param_hint="--partition"
            ) from exc
    raise click.BadParameter(
        f"{spec!r}: use iid, by_column:COLUMN or dirichlet:COLUMN[:ALPHA]", param_hint="--partition"
    )


def _round_name(idx: int) -> str:
    """Rounds as users count them, from 1 (the initialisation step: `initial model`)."""
    return "initial model" if idx == INIT_ROUND else f"round {idx + 1}"


def _describe(config: JobConfig) -> str:
    """`krum(f=1, m=1)`."""
    s = msgspec.to_builtins(config.strategy)
    args = ", ".join(f"{k}={v}" for k, v in s.items() if k != "name" and v is not None)
    return f"{config.strategy.name}({args})"


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def cli() -> None:
    """Grid-X: federated training on machines that people lend."""


# --- coordinator -----------------------------------------------------------------------------
@cli.group()
def coordinator() -> None:
    """Run the coordinator."""


@coordinator.command("start")
@data_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to bind.")
@click.option("--public-url", default=None, help="Base URL nodes use for signed links.")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--log-format",
    envvar="GRIDX_LOG_FORMAT",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one object per line with job/task/node ids [GRIDX_LOG_FORMAT].",
)
@click.option(
    "--tls-cert",
    envvar="GRIDX_TLS_CERT",
    type=click.Path(exists=True, dir_okay=False),
    help="Serve HTTPS with this certificate (PEM) [GRIDX_TLS_CERT].",
)
@click.option(
    "--tls-key",
    envvar="GRIDX_TLS_KEY",
    type=click.Path(exists=True, dir_okay=False),
    help="The certificate's private key (PEM) [GRIDX_TLS_KEY].",
)
def coordinator_start(
    data_dir: Path,
    host: str,
    port: int,
    public_url: str | None,
    log_level: str,
    log_format: str,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """Serve the API, over HTTPS when given a certificate.

    Metadata goes to SQLite and blobs to disk in DATA_DIR unless GRIDX_DATABASE_URL
    (postgresql://...) and GRIDX_STORAGE_URL (s3://bucket) name shared ones (for replicas).
    """
    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    import uvicorn

    from gridx.coordinator.api.app import create_app
    from gridx.coordinator.logs import configure
    from gridx.coordinator.settings import settings_from_env

    configure(log_level, log_format)
    # Full garbage collections over everything imported stalled the event loop for hundreds of
    # milliseconds under load; freeze what exists now and collect young objects less often
    # (bench/load.py, 10,000 nodes heartbeating: p99 39 ms instead of 220-370 ms).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    settings = settings_from_env(data_dir=data_dir, host=host, port=port, public_url=public_url)
    scheme = "https" if tls_cert else "http"
    where = settings.database_url.split("@")[-1] if settings.database_url else "SQLite"
    click.echo(
        f"Grid-X coordinator on {scheme}://{host}:{port} (data in {data_dir}; metadata: {where}; "
        f"blobs: {settings.storage_url or 'local disk'})",
        err=True,
    )
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's records go through the formatter configured above
        timeout_keep_alive=30,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )


# --- users -----------------------------------------------------------------------------------
@cli.group()
def user() -> None:
    """Manage users (run on the coordinator's host)."""


@user.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@data_dir_option
@json_option
def user_create(email: str, admin: bool, data_dir: Path, as_json: bool) -> None:
    """Create a user and print its API key (shown once)."""
    from gridx.coordinator.clock import SystemClock
    from gridx.coordinator.db.connection import connect
    from gridx.coordinator.errors import GridXError
    from gridx.coordinator.services.auth import create_user
    from gridx.coordinator.settings import settings_from_env

    async def go() -> tuple[str, str]:
        db = await connect(settings_from_env(data_dir=data_dir).db_url)
        try:
            row, key = await create_user(db, SystemClock(), email, admin)
        finally:
            await db.close()
        return row.role, key

    try:
        role, key = asyncio.run(go())
    except GridXError as exc:
        raise click.ClickException(exc.message) from exc
    if as_json:
        click.echo(to_json({"email": email, "role": role, "api_key": key}))
    else:
        click.echo(f"created {role} {email}; API key (shown once, keep it safe):\n{key}")


# --- jobs ------------------------------------------------------------------------------------
@cli.group()
def job() -> None:
    """Submit and follow jobs."""


@job.command("submit")
@click.argument("train_py", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--requirements", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Dataset; a .csv is split into shards by rows.",
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
    help="Strategy parameter, repeatable: mu, eta, beta1, beta2, tau, beta, f, m, clip_norm.",
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
    show_default=True,
    type=int,
    help="Train each shard on this many nodes of different owners; keep what a majority agrees on.",
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
@click.option("--wait", is_flag=True, help="Follow the job and download the model when done.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where --wait saves final_model.pth.",
)
@url_option
@key_option
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
    wait: bool,
    out: Path,
    url: str,
    api_key: str,
    as_json: bool,
    **config: object,
) -> None:
    """Submit TRAIN_PY (+ requirements and data) as a federated job."""
    if bool(evaluate) != bool(test_data):
        raise click.UsageError("--evaluate and --test-data go together")
    client = ApiClient(url, api_key)
    detail = client.submit(
        {**config, "strategy": _strategy(strategy, params), "partition": _partition(partition)},
        train_py,
        requirements,
        data,
        init_model,
        (evaluate, test_data) if evaluate and test_data else None,
    )
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
    path = client.download(job_id, "pth", out / "final_model.pth")
    if as_json:
        click.echo(to_json({"job": detail.job, "rounds": detail.rounds, "model": str(path)}))
    else:
        click.echo(f"final model: {path}")


@job.command("list")
@url_option
@key_option
@json_option
def job_list(url: str, api_key: str, as_json: bool) -> None:
    """Your jobs, newest first."""
    rows = ApiClient(url, api_key).jobs()
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no jobs yet: `gridx job submit train.py --data data.csv --wait`")
        return
    click.echo(f"{'ID':<16} {'STATUS':<11} {'ROUND':>7} {'TASKS':>9}  {'CREATED':<19}  NAME")
    for j in rows:
        rnd = f"{min(j.current_round + 1, j.rounds)}/{j.rounds}"
        click.echo(
            f"{j.id:<16} {j.status:<11} {rnd:>7} {j.tasks_done:>4}/{j.tasks_total:<4}  "
            f"{_when(j.created_at):<19}  {j.name}"
        )


@job.command("status")
@click.argument("job_id")
@url_option
@key_option
@json_option
def job_status(job_id: str, url: str, api_key: str, as_json: bool) -> None:
    """One job: rounds with metrics, tasks with nodes and attempts."""
    d = ApiClient(url, api_key).job(job_id)
    if as_json:
        click.echo(to_json(d))
        return
    j = d.job
    click.echo(f"{j.id}  {j.name}  [{j.status}]  owner {j.owner}")
    c = d.config
    click.echo(
        f"config: rounds={c.rounds} shards={c.shards} epochs={c.epochs} strategy={_describe(c)} "
        f"timeout={c.task_timeout_s}s max_attempts={c.max_attempts} seed={c.seed}"
    )
    for r in d.rounds:
        name = _round_name(r.index)
        held_out = f"  held-out: {format_metrics(r.held_out)}" if r.held_out else ""
        click.echo(f"  {name}: {r.status:<11} {format_metrics(r.metrics)}{held_out}")
    for t in d.tasks:
        err = f"  [{t.error_code}] {t.error}" if t.error else ""
        what = "evaluation" if t.kind == "evaluate" else f"shard {t.shard}"
        click.echo(
            f"    {_round_name(t.round)} {what}: {t.status:<9} node={t.node_id or '-'} "
            f"attempts={t.attempts}/{t.max_attempts} losses={t.losses}/{t.max_losses} "
            f"rows={t.rows}{err}"
        )
    if j.status == "failed":
        click.echo(f"error: {j.error}\n{last_failure(d)}")


@job.command("cancel")
@click.argument("job_id")
@url_option
@key_option
@json_option
def job_cancel(job_id: str, url: str, api_key: str, as_json: bool) -> None:
    """Cancel an unfinished job."""
    j = ApiClient(url, api_key).cancel(job_id)
    click.echo(to_json(j) if as_json else f"{j.id} {j.status}")


@job.command("download")
@click.argument("job_id")
@click.option(
    "--format", "fmt", type=click.Choice(["pth", "safetensors"]), default="pth", show_default=True
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="File to write (default: final_model.<format>).",
)
@url_option
@key_option
def job_download(job_id: str, fmt: str, out: Path | None, url: str, api_key: str) -> None:
    """Download a finished job's model."""
    path = ApiClient(url, api_key).download(job_id, fmt, out or Path(f"final_model.{fmt}"))
    click.echo(str(path))


# --- nodes -----------------------------------------------------------------------------------
@cli.group()
def node() -> None:
    """See your nodes."""


@node.command("list")
@url_option
@key_option
@json_option
def node_list(url: str, api_key: str, as_json: bool) -> None:
    """Your nodes (an admin sees all)."""
    rows = ApiClient(url, api_key).nodes()
    if as_json:
        click.echo(to_json(rows))
        return
    if not rows:
        click.echo("no nodes yet: `gridx-node start --coordinator URL --enrolment-key KEY`")
        return
    click.echo(
        f"{'ID':<16} {'STATUS':<9} {'ISOLATION':<11} {'ARCH':<8} {'DONE':>5}  "
        f"{'LAST SEEN':<19}  NAME"
    )
    for n in rows:
        click.echo(
            f"{n.id:<16} {n.status:<9} {n.capabilities.isolation:<11} {n.capabilities.arch:<8} "
            f"{n.tasks_done:>5}  {_when(n.last_seen):<19}  {n.name}"
        )


# --- demo ------------------------------------------------------------------------------------
@cli.command()
@click.option("--rounds", default=3, show_default=True, type=int)
@click.option("--nodes", "num_nodes", default=2, show_default=True, type=int)
@click.option("--epochs", default=5, show_default=True, type=int, help="Local epochs per round.")
@click.option("--keep", is_flag=True, help="Keep the temp data dir for a look afterwards.")
@click.option(
    "--example",
    type=click.Choice(["digits", "regression"]),
    default="digits",
    show_default=True,
    help="digits: classification of 8x8 images; regression: energy use from 8 readings.",
)
def demo(rounds: int, num_nodes: int, epochs: int, keep: bool, example: str) -> None:
    """Run a real federated job end to end on this machine, then compare with central training."""
    from gridx.coordinator.cli.demo import run_demo

    sys.exit(run_demo(rounds=rounds, num_nodes=num_nodes, epochs=epochs, keep=keep, name=example))


def main() -> None:
    """Entry point."""
    cli()


__all__ = ["FINISHED", "cli", "main"]

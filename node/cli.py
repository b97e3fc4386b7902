"""`gridx-node`: the node daemon's command line."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click
import msgspec

from gridx.node import availability, datasets, status_page
from gridx.node.availability import parse_hours
from gridx.node.client import CoordinatorClient
from gridx.node.config import NodeConfig, default_env_file, forget_enrolment_key, load_config
from gridx.node.enrolment import capabilities, enrol
from gridx.node.errors import NodeError, WeakSandbox
from gridx.node.executors import make_executor
from gridx.node.memory import MemoryBudget
from gridx.node.selftest import explain, run_selftest
from gridx.node.state import load_identity, lock_state_dir
from gridx.node.worker import Worker
from gridx.schemas.envconfig import ConfigError
from gridx.schemas.redaction import Redact

log = logging.getLogger("gridx.node")


async def _serve(config: NodeConfig, env_file: Path | None) -> None:
    python = config.python or sys.executable
    lock = lock_state_dir(config.state_dir)  # before anything in the folder is touched
    ident = load_identity(config.state_dir, config.coordinator_url)
    node_id = ident.node_id if ident else ""
    budget = MemoryBudget.measure(config.memory_mb)
    executor = make_executor(
        config.executor,
        config.state_dir,
        python,
        node_id,
        config.sandbox,
        config.executor_image,
        config.warm_idle_s,
        budget,
    )
    executor.cleanup()
    report = await run_selftest(executor, config.state_dir, await executor.prepare(None, None))
    if report.level != "strong" and not config.allow_weak_sandbox:
        raise WeakSandbox(f"refusing to run untrusted jobs: {explain(report)}")
    caps = capabilities(executor, report, budget)
    if ident is None:
        bootstrap = CoordinatorClient(config.coordinator_url, ca_file=config.ca_file)
        try:
            ident = await enrol(config, bootstrap, caps)
        finally:
            await bootstrap.close()
        if forget_enrolment_key(env_file):
            log.info("registered: the enrolment key was removed from %s", env_file)
        # labels and cgroups carry the node's id, known only now
        executor = make_executor(
            config.executor,
            config.state_dir,
            python,
            ident.node_id,
            config.sandbox,
            config.executor_image,
            config.warm_idle_s,
            budget,
        )
    client = CoordinatorClient(config.coordinator_url, ident.node_token, config.ca_file)
    worker = Worker(config, client, ident, executor, report, budget)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.request_stop)
    page = await status_page.serve(worker, config.status_port) if config.status_port else None
    try:
        await worker.run()
    finally:
        if page is not None:
            await page.cleanup()
        await client.close()
        lock.close()


def _no_key_in_argv(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--enrolment-key on the command line is readable by every user of this machine "
            "(/proc/PID/cmdline); save it to a file and pass --enrolment-key-file FILE (or - to "
            "read it from standard input), or set GRIDX_ENROLMENT_KEY"
        )


@click.group()
@click.version_option(package_name="gridx", prog_name="gridx-node")
def cli() -> None:
    """Grid-X node: lend this machine to federated training jobs."""


@cli.command()
@click.option("--coordinator", "coordinator_url", help="Coordinator URL [GRIDX_COORDINATOR_URL].")
@click.option(
    "--enrolment-key-file",
    help="A file holding an enrolment token (`gridx node token create`), or - for standard "
    "input; needed once to register [GRIDX_ENROLMENT_KEY holds the token itself].",
)
@click.option("--enrolment-key", hidden=True, callback=_no_key_in_argv, expose_value=False)
@click.option("--owner-email", help="Owner's email, checked against the key [GRIDX_OWNER_EMAIL].")
@click.option("--name", help="Display name (default: host name).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Identity and work folder.")
@click.option(
    "--executor",
    type=click.Choice(["auto", "docker", "process"]),
    help="How tasks run: docker when an engine answers (auto), or a sandboxed process.",
)
@click.option(
    "--sandbox",
    type=click.Choice(["auto", "bubblewrap", "unshare", "none", "off"]),
    help="The process executor's sandbox (auto: the strongest that works; off: none at all, "
    "tasks run as this user: for your own code only) [GRIDX_SANDBOX].",
)
@click.option(
    "--allow-weak-sandbox",
    is_flag=True,
    default=None,
    help="Work even if the start-up self-test finds the sandbox below strong; the node "
    "advertises the level it measured, and jobs can refuse it [GRIDX_ALLOW_WEAK_SANDBOX].",
)
@click.option("--python", help="Interpreter for train.py (default: this one).")
@click.option(
    "--warm/--no-warm",
    default=None,
    help="Run a job's tasks in one warm sandboxed runner per job where the job allows it "
    "(default) [GRIDX_WARM].",
)
@click.option(
    "--hours", help="Take tasks only between these hours, e.g. 22-07 (local time) [GRIDX_HOURS]."
)
@click.option(
    "--when-idle",
    is_flag=True,
    default=None,
    help="Take tasks only while the machine is otherwise idle [GRIDX_WHEN_IDLE].",
)
@click.option("--memory-mb", type=int, help="Memory cap per task (MiB).")
@click.option("--cpus", type=int, help="Threads per task (0: all).")
@click.option(
    "--config",
    "env_file",
    type=click.Path(exists=True, path_type=Path),
    help="A worker_config.env file (default: ./worker_config.env if present).",
)
@click.option("--once", is_flag=True, default=None, help="Run one task, then exit.")
@click.option("--status-port", type=int, help="Local status page on 127.0.0.1 (0: off).")
@click.option("--ca-file", help="CA bundle to trust for an https coordinator [GRIDX_CA_FILE].")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def start(env_file: Path | None, verbose: bool, **flags: object) -> None:
    """Register (first time), then take and run tasks until stopped (SIGTERM releases the task)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(Redact())
    try:
        config = load_config(env_file, **flags)
        parse_hours(config.hours)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        asyncio.run(_serve(config, default_env_file(env_file)))
    except NodeError as exc:  # one line, and the exit code of its kind (3: the owner's mistake)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)


def _state_dir(state_dir: Path | None) -> Path:
    try:
        return load_config(None, state_dir=state_dir).state_dir
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


_state_option = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="The node's state folder (default: GRIDX_STATE_DIR or ~/.gridx-node).",
)


@cli.group()
def dataset() -> None:
    """Datasets this machine holds for jobs that train where the data lives. The coordinator
    sees only their names, formats, columns and row counts; a running node picks up every
    change at its next heartbeat."""


@dataset.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--description", default="", help="What it holds, shown to job owners.")
@click.option(
    "--allow-user",
    "allow_users",
    multiple=True,
    metavar="EMAIL",
    help="Someone besides you who may train on it (repeat; default: only you).",
)
@_state_option
def dataset_add(
    name: str, path: Path, description: str, allow_users: tuple[str, ...], state_dir: Path | None
) -> None:
    """Declare PATH (a .csv, .tsv, .jsonl file or a folder) as dataset NAME."""
    try:
        item = datasets.add(_state_dir(state_dir), name, path, description, list(allow_users))
    except NodeError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    who = ", ".join(item.allow_users) or "only you"
    cols = f", columns {', '.join(item.columns)}" if item.columns else ""
    click.echo(f"{item.name}: {item.format}, {item.rows} rows{cols}; usable by {who}")


@dataset.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_state_option
def dataset_list(as_json: bool, state_dir: Path | None) -> None:
    """The datasets this node declares (and where each lives on this machine)."""
    items = datasets.load(_state_dir(state_dir))
    if as_json:
        click.echo(msgspec.json.encode(items).decode())
        return
    if not items:
        click.echo("no datasets: add one with `gridx-node dataset add NAME PATH`")
    for d in items:
        who = ", ".join(d.allow_users) or "only you"
        click.echo(f"{d.name}\t{d.format}\t{d.rows} rows\t{d.path}\tusable by {who}")


@dataset.command("remove")
@click.argument("name")
@_state_option
def dataset_remove(name: str, state_dir: Path | None) -> None:
    """Stop offering dataset NAME (its copies for tasks are deleted; the data is not)."""
    if not datasets.remove(_state_dir(state_dir), name):
        click.echo(f"Error: no dataset {name!r} on this node", err=True)
        sys.exit(3)
    click.echo(f"{name}: removed")


@cli.command()
@_state_option
def pause(state_dir: Path | None) -> None:
    """Take no new task (the running one finishes) until `gridx-node resume`; kept across
    restarts."""
    availability.pause(_state_dir(state_dir))
    click.echo("paused: the node finishes its task, if any, and takes no more")


@cli.command()
@_state_option
def resume(state_dir: Path | None) -> None:
    """Take tasks again."""
    was = availability.resume(_state_dir(state_dir))
    click.echo("resumed" if was else "the node was not paused")


@cli.command("sandbox")
def sandbox_mechanism() -> None:
    """Print the process sandbox this machine offers, strongest first: bubblewrap, unshare or
    none (`start` then measures what it holds with its self-test)."""
    from gridx.node.sandbox import detect

    click.echo(detect())

"""`gridx`: run the coordinator, manage users, submit and follow jobs, list nodes, run the demo."""

from __future__ import annotations

import asyncio
import gc
import getpass
import os
import socket
import sys
from pathlib import Path

import click

from gridx.coordinator import storage
from gridx.coordinator.cli import admin
from gridx.coordinator.cli.client import ApiClient, to_json
from gridx.coordinator.cli.jobs import job
from gridx.coordinator.cli.nodes import datasets, node
from gridx.coordinator.cli.options import client_options, data_dir_option, json_option
from gridx.coordinator.settings import Settings, settings_from_env
from gridx.schemas.envconfig import ConfigError


@click.group()
@click.version_option(package_name="gridx", prog_name="gridx")
def cli() -> None:
    """Grid-X: federated training on machines that people lend."""


cli.add_command(job)
cli.add_command(node)
cli.add_command(datasets)


def _settings(**flags: object) -> Settings:
    """The coordinator's settings: flags given, else `GRIDX_<FIELD>`, else the defaults; a
    storage setting that cannot work is refused here, before anything starts."""
    try:
        settings = settings_from_env(**flags)
        storage.check(settings)
        return settings
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc


# --- coordinator -----------------------------------------------------------------------------
@cli.group()
def coordinator() -> None:
    """Run the coordinator."""


@coordinator.command("start")
@data_dir_option
@click.option("--host", help="Address to bind [GRIDX_HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port to bind [GRIDX_PORT; default 8080].")
@click.option("--public-url", help="Base URL nodes use for signed links [GRIDX_PUBLIC_URL].")
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
    data_dir: Path | None,
    host: str | None,
    port: int | None,
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

    configure(log_level, log_format)
    # Full garbage collections over everything imported stalled the event loop for hundreds of
    # milliseconds under load; freeze what exists now and collect young objects less often
    # (bench/load.py, 10,000 nodes heartbeating: p99 39 ms instead of 220-370 ms).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    settings = _settings(data_dir=data_dir, host=host, port=port, public_url=public_url)
    scheme = "https" if tls_cert else "http"
    where = settings.database_url.split("@")[-1] if settings.database_url else "SQLite"
    click.echo(
        f"Grid-X coordinator on {scheme}://{settings.host}:{settings.port} (data in "
        f"{settings.data_dir}; metadata: {where}; "
        f"blobs: {settings.storage_url or 'local disk'})",
        err=True,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    local = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = settings.public_url or f"{scheme}://{local}:{settings.port}"
    (settings.data_dir / URL_FILE).write_text(url + "\n")  # what `gridx user create` prints
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        log_config=None,  # uvicorn's records go through the formatter configured above
        timeout_keep_alive=30,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )


URL_FILE = "coordinator.url"
"""In the data dir: the URL `coordinator start` serves on, for the lines `user create` prints."""


@coordinator.command("backup")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@data_dir_option
@json_option
def coordinator_backup(out: Path, data_dir: Path | None, as_json: bool) -> None:
    """Back up an embedded coordinator (SQLite + local blobs) into OUT while it runs; restore
    by starting a coordinator with `--data-dir OUT`."""
    from gridx.coordinator.cli.backup import backup

    done = backup(_settings(data_dir=data_dir), out)
    if as_json:
        click.echo(to_json(done))
    else:
        click.echo(
            f"backed up to {out}: database {done['database_bytes']} bytes, {done['blobs']} "
            f"blob(s), {done['blob_bytes']} bytes; restore: "
            f"gridx coordinator start --data-dir {out}"
        )


@coordinator.command("openapi")
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (default: stdout)."
)
def coordinator_openapi(out: Path | None) -> None:
    """Print the API's OpenAPI document (the dashboard's types are generated from it:
    `just api-types` writes web/openapi.json)."""
    import tempfile

    from gridx.coordinator.api.app import create_app
    from gridx.coordinator.api.openapi import document

    with tempfile.TemporaryDirectory() as tmp:  # the app is built, never started
        text = document(create_app(Settings(data_dir=Path(tmp))))
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)


# --- users -----------------------------------------------------------------------------------
@cli.group()
def user() -> None:
    """Users: `create` runs on the coordinator's host; the rest go through the API (admins)."""


@user.command("create")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@data_dir_option
@json_option
def user_create(email: str, admin: bool, data_dir: Path | None, as_json: bool) -> None:
    """Create a user and print its API key (shown once)."""
    from gridx.coordinator.clock import SystemClock
    from gridx.coordinator.db import connect
    from gridx.coordinator.errors import GridXError
    from gridx.coordinator.services.auth import create_user

    settings = _settings(data_dir=data_dir)
    implicit = data_dir is None and not os.environ.get("GRIDX_DATA_DIR")
    if implicit and not settings.database_url and not settings.db_path.exists():
        raise click.UsageError(
            f"no coordinator database at {settings.db_path.resolve()}: pass --data-dir (the "
            "folder `gridx coordinator start` uses) or set GRIDX_DATA_DIR or GRIDX_DATABASE_URL; "
            "a key made elsewhere would not open this coordinator"
        )

    async def go() -> tuple[str, str]:
        db = await connect(settings.db_url)
        try:
            actor = f"{getpass.getuser()}@{socket.gethostname()} (gridx user create)"
            row, key = await create_user(db, SystemClock(), email, admin, actor)
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
        noted = settings.data_dir / URL_FILE
        url = noted.read_text().strip() if noted.exists() else f"http://127.0.0.1:{settings.port}"
        click.echo(f"created {role} {email}; API key (shown once, keep it safe):\n{key}")
        click.echo(
            f"to use it (the CLI reads these):\n  export GRIDX_URL={url} GRIDX_API_KEY={key}"
        )


@user.command("list")
@client_options
@json_option
def user_list(client: ApiClient, as_json: bool) -> None:
    """Every user: role, state, live keys, last use (admins)."""
    admin.user_list_command(client, as_json)


@user.command("disable")
@click.argument("email")
@client_options
@json_option
def user_disable(client: ApiClient, email: str, as_json: bool) -> None:
    """Disable a user: its keys are refused (403) and its jobs take no new task (admins)."""
    admin.user_disable_command(client, email, as_json, disabled=True)


@user.command("enable")
@click.argument("email")
@client_options
@json_option
def user_enable(client: ApiClient, email: str, as_json: bool) -> None:
    """Enable a disabled user again (admins)."""
    admin.user_disable_command(client, email, as_json, disabled=False)


@user.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice(["admin", "user"]))
@client_options
@json_option
def user_set_role(client: ApiClient, email: str, role: str, as_json: bool) -> None:
    """Make a user an admin or a plain user (admins)."""
    admin.user_role_command(client, email, role, as_json)


cli.add_command(admin.key)
cli.add_command(admin.audit)


# --- demo ------------------------------------------------------------------------------------
@cli.command()
@click.option("--rounds", default=3, show_default=True, type=int)
@click.option("--nodes", "num_nodes", default=2, show_default=True, type=int)
@click.option("--epochs", default=5, show_default=True, type=int, help="Local epochs per round.")
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the temp folder (final model, logs, data) afterwards; kept anyway on failure.",
)
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


__all__ = ["cli", "main"]

"""Options and small formatters the `gridx` command groups share."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from pathlib import Path

import click

from gridx.coordinator.cli import profiles
from gridx.coordinator.cli.client import ApiClient

DEFAULT_URL = "http://127.0.0.1:8080"
url_option = click.option(
    "--url",
    envvar="GRIDX_URL",
    help=f"Coordinator URL [GRIDX_URL, else the profile's, else {DEFAULT_URL}].",
)
key_option = click.option(
    "--api-key", envvar="GRIDX_API_KEY", help="Your API key [GRIDX_API_KEY, else the profile's]."
)
ca_option = click.option(
    "--ca-file",
    envvar="GRIDX_CA_FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="CA bundle to trust for an https coordinator [GRIDX_CA_FILE, else the profile's].",
)
profile_option = click.option(
    "--profile",
    envvar="GRIDX_PROFILE",
    help="A profile of ~/.config/gridx/config.toml [GRIDX_PROFILE; default: its `default`].",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
data_dir_option = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help="Coordinator data folder [GRIDX_DATA_DIR; default gridx-data].",
)


def client_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--url`, `--api-key` and `--ca-file`, handed to the command as one `client`."""

    @url_option
    @key_option
    @ca_option
    @profile_option
    @functools.wraps(command)
    def with_client(
        *args: object,
        url: str | None,
        api_key: str | None,
        ca_file: str | None,
        profile: str | None,
        **kw: object,
    ) -> None:
        chosen = profiles.profile(profile)  # flags and variables win over it
        api_key = api_key or chosen.get("api_key")
        if not api_key:
            raise click.UsageError(
                "no API key: pass --api-key or set GRIDX_API_KEY, or give a profile an api_key "
                f"in {profiles.config_path()} (an admin creates keys with `gridx user create "
                "EMAIL` on the coordinator's host)"
            )
        client = ApiClient(
            url or chosen.get("url") or DEFAULT_URL,
            api_key,
            ca_file=ca_file or chosen.get("ca_file"),
        )
        ctx = click.get_current_context()
        client.names = {
            p.name: p.opts[0] for p in ctx.command.params if isinstance(p, click.Option) and p.name
        }
        command(*args, client=client, **kw)

    return with_client


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def destination(out: str | None, name: str) -> Path:
    """Where a download lands: `out` itself, or `name` inside it when `out` is a folder (one
    that exists, or a path ending in /); `name` here without `out`."""
    if out is None:
        return Path(name)
    path = Path(out)
    return path / name if path.is_dir() or out.endswith("/") else path

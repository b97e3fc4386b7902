"""Options and small formatters the `gridx` command groups share."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

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
    help="Coordinator data folder [GRIDX_DATA_DIR; default gridx-data].",
)


def when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")

"""The `gridx` command's entry point: where only the node is installed (the volunteer bundle,
a Raspberry Pi), it says what `gridx` needs instead of a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    """Run `gridx`; without the coordinator's packages, one line on how to get them."""
    try:
        from gridx.coordinator.cli.main import cli
    except ModuleNotFoundError as exc:
        print(
            f"gridx: this install is a node only ({exc.name} is missing): `gridx-node` runs "
            "tasks here; `gridx` (submit jobs, run a coordinator) needs "
            "`pip install 'gridx[coordinator]'`",
            file=sys.stderr,
        )
        sys.exit(1)
    cli()

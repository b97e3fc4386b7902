"""`python -m gridx.coordinator.cli` = `gridx`."""

from gridx.coordinator.cli.main import cli

cli()

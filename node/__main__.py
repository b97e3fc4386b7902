"""`python -m gridx.node` = `gridx-node`."""

from gridx.node.cli import cli

cli()

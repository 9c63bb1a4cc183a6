"""`python -m bundles` is the appliance-bundle command."""

from bundles.cli import cli

cli(prog_name="appliance-bundle")

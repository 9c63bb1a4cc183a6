"""`python -m installer` and the PyInstaller entry point: the appliance-installer command."""

from installer.cli import cli

cli(prog_name="appliance-installer")

"""`python -m installer` and the PyInstaller entry point: the appliance-installer command."""

from installer.cli import main

main()

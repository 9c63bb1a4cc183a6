"""`python -m appliance` is the `appliance` command."""

from appliance.cli.main import cli

cli(prog_name="appliance")

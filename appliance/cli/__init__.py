"""The `appliance` command: the server, migrations, and a client for the REST API."""

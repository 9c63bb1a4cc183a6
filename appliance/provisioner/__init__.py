"""The provisioner's server side: the job queue in PostgreSQL, handing jobs out, recording their results.

The daemon side (runner, terraform, remote backend) is appliance.provisionerd; the in-process
daemons here (local.py) drive it through the SQL LocalBackend.
"""

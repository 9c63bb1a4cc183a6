"""The provisioner: a job queue in PostgreSQL and daemons that run terraform for its jobs."""

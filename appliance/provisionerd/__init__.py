"""provisionerd: the daemon that runs terraform for the control plane's jobs, wherever it runs.

It may run away from the database (`appliance provisionerd start`), so it imports only the wire
(appliance.sdk), the error type, the mirror's pure CLI-config writer and the standard library;
never the database, auth, Flask or the domain services. The control plane's side of a job (queue,
acquisition, completion) lives in appliance.provisioner and drives this package, never the reverse.
"""

"""Prometheus metrics (docs/metrics.md, docs/adr/0042): what each process counts and what a scrape computes.

live.py holds the counters a process keeps (requests, latencies, requests and WebSockets in flight),
in memory or, under gunicorn and the installed gateway, in prometheus-client's multiprocess files;
requests.py and websockets.py feed them from Flask and the gateway. database.py and host.py compute the
rest at scrape time from PostgreSQL and the host's files, so every worker answers the same and a restart
loses nothing. scrape.py puts them together for GET /api/v2/metrics; gunicorn.py is gunicorn's config.
"""

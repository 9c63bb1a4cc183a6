"""Helpers for tests: a real PostgreSQL cluster, a real HTTP server, an API client."""

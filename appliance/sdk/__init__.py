"""The wire: every request and response shape of the API, declared once, and the one HTTP client.

The API serialises through these models, the OpenAPI document is generated from them, and the
CLI and the daemons that run away from the database (provisionerd, later the agent) parse with
them. This package imports only pydantic, requests and the standard library, never the
database, auth or Flask.
"""

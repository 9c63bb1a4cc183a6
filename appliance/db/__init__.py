"""PostgreSQL access: the connection pool, numbered SQL migrations and the embedded cluster."""

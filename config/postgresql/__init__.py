"""Django's PostgreSQL backend with a health check that needs no round trip when the connection
is quiet (``config.postgresql.base``)."""

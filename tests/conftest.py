"""Shared fixtures. Tests run against real PostgreSQL (DATABASE_URL); there is no SQLite path."""

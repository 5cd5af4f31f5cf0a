"""Moving a test database to a migration state and back, for the data-migration tests (each seeds
rows at the state before a migration, migrates, checks the rows, and migrates back)."""

from __future__ import annotations

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate_to(targets):
    """Migrate to ``targets`` ([(app, migration name)]); the apps registry of that state."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def migrate_to_latest() -> None:
    """Back to the latest schema, for the tests that follow."""
    migrate_to(MigrationExecutor(connection).loader.graph.leaf_nodes())


def columns_present(table: str, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` are columns of ``table`` now, sorted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name = ANY(%s) "
            "ORDER BY column_name",
            [table, list(names)],
        )
        return [row[0] for row in cursor.fetchall()]

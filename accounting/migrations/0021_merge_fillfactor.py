"""Room on each page for the merge's updates (issue 18): a ledger entry is updated by every batch of
its hour, and the aggregates by every rollup. None of the columns those updates change is
indexed, so with free space on the page PostgreSQL writes them as heap-only tuples (no new entry
in any of the table's indexes, much less WAL); at the default fillfactor (100) every update moved
the row and inserted an entry into each index."""

from django.db import migrations

TABLES = (
    "accounting_ledgerentry",
    "accounting_jobhour",
    "accounting_jobfootprint",
    "accounting_devicehour",
    "accounting_teamhour",
    "accounting_teamday",
)


class Migration(migrations.Migration):
    dependencies = [
        ("accounting", "0020_device_hour_raw_sums"),
    ]

    operations = [
        migrations.RunSQL(
            ";".join(f"ALTER TABLE {table} SET (fillfactor = 70)" for table in TABLES),
            ";".join(f"ALTER TABLE {table} RESET (fillfactor)" for table in TABLES),
        ),
    ]

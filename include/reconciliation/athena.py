"""Athena (Trino) CTAS renders of the hour's batch sessions and of the reconciliation, for hours too big for one
worker: the same templates as the DuckDB path (``dialect='athena'``), so the rules cannot drift.

Athena binds no parameters into DDL, so every value is validated before it is placed in the SQL (like
:mod:`include.compaction.ctas`). Inputs are Glue tables: the compacted events (partitions event_date/event_hour),
the stream's sessions, late and rejected tables (partitions dt/hr, JSON; to be registered by the DAG step), a
small table of quarantined records the stream accepts (computed by DuckDB, ``quarantine_accepted.sql``) and the
raw copies per event_id (e.g. ``SELECT event_id, count(*) FROM raw ... HAVING count(*) > 1``).
The reconciliation CTAS writes the classified rows (reconcile.sql's columns); the report is built from them.
Not run against Athena here (no engine on this machine): tests check the render, not the engine.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from include.reconciliation.hour_sessions import template_values
from include.reconciliation.options import HourWindow, ReconcileOptions
from include.sessions.templates import render

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,254}$")
_S3_LOCATION = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9_./=-]*/$")


def _identifier(name: str, value: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            f"{name} must be a lower-case Glue/Athena identifier ([a-z_][a-z0-9_]*), got {value!r}"
        )
    return value


def _location(value: str) -> str:
    if not isinstance(value, str) or not _S3_LOCATION.match(value):
        raise ValueError(
            f"external_location must look like s3://bucket/prefix/ (ending with '/', no quotes), got {value!r}"
        )
    return value


def _partitions(table: str, hours: list[datetime], date_col: str, hour_col: str) -> str:
    where = " OR ".join(f"({date_col} = '{h:%Y-%m-%d}' AND {hour_col} = '{h:%H}')" for h in hours)
    return f"(SELECT * FROM {table} WHERE {where})"


def _table(database: str, name: str, table: str) -> str:
    return f'"{_identifier("database", database)}"."{_identifier(name, table)}"'


def _values(
    hour: datetime,
    options: ReconcileOptions | None,
    now: datetime | None,
    database: str,
    ctas_table: str,
    external_location: str,
) -> tuple[HourWindow, ReconcileOptions, dict]:
    options = (options or ReconcileOptions()).replace(now=now or datetime.now(UTC))
    window = HourWindow.of(hour, options)
    values = template_values(window, options, dialect="athena")
    values.update(
        ctas=True,
        database=_identifier("database", database),
        ctas_table=_identifier("ctas_table", ctas_table),
        external_location=_location(external_location),
    )
    return window, options, values


def render_hour_sessions_ctas(
    *,
    database: str,
    events_table: str,
    ctas_table: str,
    external_location: str,
    hour: datetime,
    options: ReconcileOptions | None = None,
    now: datetime | None = None,
) -> str:
    """CTAS writing hour H's batch sessions (the stream's columns) from the compacted events table."""
    window, options, values = _values(hour, options, now, database, ctas_table, external_location)
    source = _partitions(
        _table(database, "events_table", events_table), window.event_hours(), "event_date", "event_hour"
    )
    return render(
        "batch/hour_sessions.sql", options.contract, source=source, events=None, window=False, **values
    )


def render_reconcile_ctas(
    *,
    database: str,
    events_table: str,
    stream_sessions_table: str,
    stream_late_table: str,
    stream_rejected_table: str,
    quarantine_accepted_table: str,
    raw_copies_table: str,
    ctas_table: str,
    external_location: str,
    hour: datetime,
    ledger_until: datetime,
    ledger_max_hours: int = 48,
    options: ReconcileOptions | None = None,
    now: datetime | None = None,
) -> str:
    """CTAS writing hour H's classified rows (one per compared session, reconcile.sql) from Glue tables."""
    window, options, values = _values(hour, options, now, database, ctas_table, external_location)
    ledger = window.ledger_hours(ledger_until, ledger_max_hours)
    return render(
        "batch/reconcile.sql",
        options.contract,
        source=_partitions(
            _table(database, "events_table", events_table), window.event_hours(), "event_date", "event_hour"
        ),
        events=None,
        window=None,
        stream_sessions=_partitions(
            _table(database, "stream_sessions_table", stream_sessions_table),
            window.stream_session_hours(),
            "dt",
            "hr",
        ),
        stream_late=_partitions(_table(database, "stream_late_table", stream_late_table), ledger, "dt", "hr"),
        stream_rejected=_partitions(
            _table(database, "stream_rejected_table", stream_rejected_table), ledger, "dt", "hr"
        ),
        quarantine_accepted=_table(database, "quarantine_accepted_table", quarantine_accepted_table),
        raw_copies=_table(database, "raw_copies_table", raw_copies_table),
        **values,
    )

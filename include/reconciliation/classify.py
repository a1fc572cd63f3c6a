"""Give every session of hour H exactly one cause (``include/sql/batch/reconcile.sql``), in DuckDB.

One vectorized query: a join of the batch and stream session sets by key and overlap settles the matched
sessions (nearly all); only the unmatched ones are re-sessionized for the late, duplicate and rule checks.
"""

from __future__ import annotations

import time

import duckdb

from include.reconciliation.hour_sessions import BatchSessions, template_values
from include.reconciliation.options import HourWindow, ReconcileOptions
from include.sessions.templates import render

#: Every cause a row can get, in the order the checks apply (deferred first: it is never compared).
CAUSES: tuple[str, ...] = (
    "deferred",
    "matched",
    "late",
    "duplicate",
    "rule_difference",
    "missing_in_stream",
    "missing_in_batch",
    "mismatch",
)
#: Causes that count against the hour; the others are explained.
UNEXPLAINED: tuple[str, ...] = ("missing_in_stream", "missing_in_batch", "mismatch")
EXPLAINED: tuple[str, ...] = ("late", "duplicate", "rule_difference")

RECONCILED_TABLE = "reconciled"
ACCEPTED_TABLE = "quarantine_accepted"


def quarantine_accepted(con: duckdb.DuckDBPyConnection, quarantined: str, options: ReconcileOptions) -> str:
    """Table of the quarantined records the stream's reject rules accept (event_id, user_id, device_id, event_ms)."""
    source = f"(SELECT record, row_number() OVER () AS arrival_order FROM {quarantined})"
    sql = render(
        "batch/quarantine_accepted.sql", options.contract, source=source, arrival_order="arrival_order"
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ACCEPTED_TABLE} AS {sql}")
    return ACCEPTED_TABLE


def classify(
    con: duckdb.DuckDBPyConnection,
    views: dict[str, str],
    batch: BatchSessions,
    window: HourWindow,
    options: ReconcileOptions,
) -> float:
    """Create table ``reconciled`` (one row per compared session, see reconcile.sql); returns the seconds taken."""
    started = time.perf_counter()
    accepted = quarantine_accepted(con, views["quarantined"], options)
    sql = render(
        "batch/reconcile.sql",
        options.contract,
        events=batch.events_table,
        window=batch.window_table,
        source=None,
        stream_sessions=views["stream_sessions"],
        stream_late=views["stream_late"],
        stream_rejected=views["stream_rejected"],
        quarantine_accepted=accepted,
        raw_copies=views["raw_copies"],
        **template_values(window, options),
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {RECONCILED_TABLE} AS {sql}")
    return time.perf_counter() - started

"""Batch sessions in DuckDB, rendered from the same contract as the Flink job (``include/sql/batch``).

The batch side is the safety net: it sees every valid event at once, so it has no watermark and nothing is late.
Sources are either raw records (the JSON text as received, like Flink reads it) or the typed compacted Parquet.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from include.sessions.contract import METRIC_FIELDS, REJECTED_FIELDS, SESSION_FIELDS, SessionContract
from include.sessions.templates import render

RAW_TABLE = "raw_events"


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection."""
    return duckdb.connect(":memory:")


def register_raw_records(
    con: duckdb.DuckDBPyConnection, records: Iterable[str], name: str = RAW_TABLE
) -> str:
    """Expose records (JSON text, in arrival order) as relation ``name(record, arrival_order)``; returns name."""
    texts = list(records)
    table = pa.table(
        {
            "record": pa.array(texts, pa.string()),
            "arrival_order": pa.array(range(len(texts)), pa.int64()),
        }
    )
    con.register(name, table)
    return name


def _query(
    con: duckdb.DuckDBPyConnection,
    template: str,
    contract: SessionContract,
    fields: Sequence[str],
    source: str,
    source_kind: str,
    arrival_order: str,
) -> list[dict[str, Any]]:
    sql = render(template, contract, source=source, source_kind=source_kind, arrival_order=arrival_order)
    cursor = con.execute(sql)
    columns = [d[0] for d in cursor.description]
    if list(columns) != list(fields):
        raise RuntimeError(f"{template} returned columns {columns}, the contract says {list(fields)}")
    # column by column (NumPy arrays to Python lists) is cheaper than DuckDB's row tuples; NULL becomes None
    data = cursor.fetchnumpy()
    values = [data[name].tolist() for name in columns]
    return [dict(zip(columns, row, strict=True)) for row in zip(*values, strict=True)]


def sessions(
    con: duckdb.DuckDBPyConnection,
    contract: SessionContract,
    source: str = RAW_TABLE,
    *,
    source_kind: str = "raw",
    arrival_order: str = "arrival_order",
) -> list[dict[str, Any]]:
    """Session rows (``SESSION_FIELDS``) sorted by user_id, device_id, session_start."""
    return _query(con, "batch/sessions.sql", contract, SESSION_FIELDS, source, source_kind, arrival_order)


def sessions_jsonl(
    con: duckdb.DuckDBPyConnection,
    contract: SessionContract,
    source: str = RAW_TABLE,
    *,
    source_kind: str = "raw",
    arrival_order: str = "arrival_order",
) -> tuple[int, str]:
    """(count, text): the session rows as JSON lines, each exactly ``json.dumps(row, ensure_ascii=False)`` of
    :func:`sessions`' rows, in the same order, each line ending in a newline; built in SQL, so no Python object
    per session. The same text because the reject rules leave no control character in a string, and DuckDB's
    JSON escapes the rest like Python's (a quote and a backslash; other characters as they are)."""
    sql = render(
        "batch/sessions.sql", contract, source=source, source_kind=source_kind, arrival_order=arrival_order
    )
    members = " || ', ' || ".join(
        f"'\"{name}\": ' || CAST(to_json({name}) AS VARCHAR)" for name in SESSION_FIELDS
    )
    count, text = con.execute(
        f"SELECT count(*), string_agg('{{' || {members} || '}}' || chr(10), '' "
        f"ORDER BY user_id, device_id, session_start) FROM ({sql}) AS session_rows"
    ).fetchone()
    return count, text or ""


def metrics(
    con: duckdb.DuckDBPyConnection,
    contract: SessionContract,
    source: str = RAW_TABLE,
    *,
    source_kind: str = "raw",
    arrival_order: str = "arrival_order",
) -> list[dict[str, Any]]:
    """Per-window metrics rows (``METRIC_FIELDS``)."""
    return _query(con, "batch/metrics.sql", contract, METRIC_FIELDS, source, source_kind, arrival_order)


def rejected(
    con: duckdb.DuckDBPyConnection,
    contract: SessionContract,
    source: str = RAW_TABLE,
    *,
    source_kind: str = "raw",
    arrival_order: str = "arrival_order",
) -> list[dict[str, Any]]:
    """Rejected records with the reason (``REJECTED_FIELDS``), in arrival order."""
    return _query(con, "batch/rejected.sql", contract, REJECTED_FIELDS, source, source_kind, arrival_order)

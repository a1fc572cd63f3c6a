"""Batch sessions in DuckDB, rendered from the same contract as the Flink job (``include/sql/batch``).

The batch side is the safety net: it sees every valid event at once, so it has no watermark and nothing is late.
Sources are either raw records (the JSON text as received, like Flink reads it) or the typed compacted Parquet.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Sequence
from typing import Any, BinaryIO

import duckdb
import numpy as np
import pyarrow as pa

from include.sessions.contract import METRIC_FIELDS, REJECTED_FIELDS, SESSION_FIELDS, SessionContract
from include.sessions.templates import render, sql_str

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


def write_sessions_jsonl(
    con: duckdb.DuckDBPyConnection,
    contract: SessionContract,
    out: BinaryIO,
    source: str = RAW_TABLE,
    *,
    source_kind: str = "raw",
    arrival_order: str = "arrival_order",
) -> int:
    """Write the session rows to ``out`` as JSON lines, each exactly ``json.dumps(row, ensure_ascii=False)`` of
    :func:`sessions`' rows, in the same order, each ending in a newline; returns the number of rows. The lines are
    made in SQL and written straight from the Arrow buffers DuckDB fills, so no Python object per session. The
    same text because the reject rules leave no control character in a string, and DuckDB's JSON escapes the rest
    like Python's (a quote and a backslash; other characters as they are)."""
    sql = render(
        "batch/sessions.sql",
        contract,
        source=source,
        source_kind=source_kind,
        arrival_order=arrival_order,
        ordered=False,
    )
    line = _json_line(plain_strings=source_kind == "proven")
    reader = con.sql(
        f"SELECT {line} AS line FROM ({sql}) AS session_rows ORDER BY user_id, device_key, start_key"
    ).to_arrow_reader(_WRITE_BATCH_ROWS)
    count = 0
    with _BackgroundWriter(out) as writer:  # DuckDB makes the next batch while the last one is written
        for batch in reader:
            lines = batch.column(0)
            if lines.null_count:
                raise RuntimeError("batch/sessions.sql gave a session row without a JSON line")
            # the lines are back to back in the array's data buffer: write that range as it is
            offsets = np.frombuffer(lines.buffers()[1], _OFFSET_TYPES[lines.type])
            first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
            writer.write(memoryview(lines.buffers()[2])[first:last])
            count += len(lines)
    return count


class _BackgroundWriter:
    """Writes to ``out`` on a thread of its own, in order, at most two chunks behind (the file write and DuckDB
    both let go of the GIL, so they overlap); the first error is raised in the caller, at the next write or at
    the end of the block."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.chunks: queue.Queue[memoryview | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sessions-writer", daemon=True)

    def _run(self) -> None:
        while (chunk := self.chunks.get()) is not None:
            if self.error is None:
                try:
                    self.out.write(chunk)
                except BaseException as exc:  # handed to the caller
                    self.error = exc

    def write(self, chunk: memoryview) -> None:
        if self.error is not None:
            raise self.error
        self.chunks.put(chunk)

    def __enter__(self) -> _BackgroundWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.chunks.put(None)
        self.thread.join()
        if self.error is not None and exc_info[0] is None:
            raise self.error


_WRITE_BATCH_ROWS = 1 << 17
_OFFSET_TYPES = {pa.string(): np.int32, pa.large_string(): np.int64}


#: Session columns whose text never needs a JSON escape: an md5 hex digest and wire-format timestamps.
_PLAIN_TEXT_FIELDS = ("session_id", "session_start", "last_event_at", "session_end")
_INTEGER_FIELDS = ("user_id", "duration_ms", "event_count")


def _json_line(plain_strings: bool) -> str:
    """SQL for a session row's JSON line: one concat() call (chained || makes a string per step) of the text
    between the values and the values; to_json only where a character may need escaping, which is nowhere when
    ``plain_strings`` (the proven source kind: no string holds a quote, a backslash or a control character)."""
    parts, text = [], ""
    for i, name in enumerate(SESSION_FIELDS):
        text += ("{" if i == 0 else ", ") + f'"{name}": '
        if name in _INTEGER_FIELDS:
            parts += [sql_str(text), f"CAST({name} AS VARCHAR)"]
            text = ""
        elif name in _PLAIN_TEXT_FIELDS or plain_strings:
            parts += [sql_str(text + '"'), f"CAST({name} AS VARCHAR)"]
            text = '"'
        else:
            parts += [sql_str(text), f"CAST(to_json({name}) AS VARCHAR)"]
            text = ""
    return f"concat({', '.join(parts)}, {sql_str(text + '}')}, chr(10))"


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

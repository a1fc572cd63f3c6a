"""Local JSON-lines files -> :class:`HourInputs`, for ``clickstream reconcile`` and tests (no S3).

Batch events are raw records as the producer sent them (any order, duplicates and malformed records included):
they are validated with compaction's :class:`RecordValidator` (no rule is restated here), invalid ones are
quarantined and copies of an event_id keep the earliest client_timestamp, like compaction. The stream's files
are its S3 row formats and are read strictly: a bad line is an :class:`InputError` naming file, line and field.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from include.compaction.validation import RecordValidator, Rejection
from include.reconciliation.inputs import (
    COPIES_SCHEMA,
    EVENTS_SCHEMA,
    LATE_SCHEMA,
    QUARANTINE_SCHEMA,
    REJECTED_SCHEMA,
    STREAM_SESSION_SCHEMA,
    HourInputs,
    stream_text,
)
from include.sessions.contract import SessionContract


class InputError(ValueError):
    """A bad input file or line; the message names the file, the line and the field."""


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    if not path.is_file():
        raise InputError(f"{path}: file does not exist or is not a file")
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            yield line_no, raw.rstrip(b"\n")


def read_raw_events(
    path: str | os.PathLike, now: datetime, contract: SessionContract
) -> tuple[pa.Table, pa.Table, pa.Table, dict[str, int]]:
    """(typed unique events, quarantined records, raw copies, counts) of a raw events file, like compaction."""
    validator = RecordValidator(None, now, timedelta(milliseconds=contract.max_future_skew_ms))
    rows: list[tuple] = []
    quarantined: list[str] = []
    reasons: Counter[str] = Counter()
    for line_no, data in _lines(Path(path)):
        data = data.rstrip(b"\r")
        if not data.strip():
            continue  # blank lines: Firehose writes none, and the stream skips them
        result = validator.validate(data)
        if isinstance(result, Rejection):
            reasons[result.reason] += 1
            quarantined.append(stream_text(data))
        else:
            rows.append((result[4], line_no, result))
    copies = Counter(row[2][0] for row in rows)
    rows.sort(key=lambda r: (r[2][0], r[0], r[1]))  # event_id, earliest client_timestamp, then file order
    unique: list[tuple] = []
    last_id = None
    for _, _, row in rows:
        if row[0] != last_id:
            unique.append(row)
            last_id = row[0]
    columns = list(zip(*unique, strict=True)) if unique else [[] for _ in range(6)]
    events = pa.Table.from_arrays(
        [
            pa.array(columns[0], pa.string()),
            pa.array(columns[1], pa.int32()),
            pa.array(columns[2], pa.string()),
            pa.array(columns[3], pa.string()),
            pa.array(columns[4], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            pa.array(columns[5], pa.string()),
        ],
        schema=EVENTS_SCHEMA,
    )
    extra = {k: v for k, v in copies.items() if v > 1}
    copies_table = pa.table({"event_id": list(extra), "copies": list(extra.values())}, schema=COPIES_SCHEMA)
    counts = {
        "records_read": len(rows) + len(quarantined),
        "valid_records": len(rows),
        "duplicates_removed": len(rows) - len(unique),
        "quarantined": len(quarantined),
        **{f"quarantined_{reason}": n for reason, n in sorted(reasons.items())},
    }
    return events, pa.table({"record": quarantined}, schema=QUARANTINE_SCHEMA), copies_table, counts


def _iso_ok(value: str) -> bool:
    try:
        parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return False
    return len(value) == 24 and parsed.strftime("%Y-%m-%dT%H:%M:%S.") + value[20:23] + "Z" == value


_KINDS = {pa.int32(): "integer", pa.int64(): "integer", pa.string(): "string"}
_TIMESTAMPS = {
    "session_start",
    "last_event_at",
    "session_end",
    "client_timestamp",
    "watermark_at",
    "arrival_time",
}


def read_stream_rows(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Rows of one stream output file (JSON lines with ``schema``'s fields; extra fields are ignored)."""
    path = Path(path)
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    for line_no, raw in _lines(path):
        where = f"{path} line {line_no}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise InputError(f"{where}: expected a JSON object with fields {', '.join(schema.names)}")
        for f in schema:
            if f.name not in obj or obj[f.name] is None:
                raise InputError(f"{where}: field {f.name} is missing")
            value = obj[f.name]
            kind = _KINDS[f.type]
            ok = (
                isinstance(value, int) and not isinstance(value, bool)
                if kind == "integer"
                else isinstance(value, str)
            )
            if not ok:
                raise InputError(
                    f"{where}: field {f.name} must be a JSON {kind}, got {json.dumps(value)[:80]}"
                )
            if f.name in _TIMESTAMPS and not _iso_ok(value):
                raise InputError(
                    f"{where}: field {f.name} must be a timestamp like 2026-11-27T10:15:30.123Z, got {value!r}"
                )
            if kind == "string" and not value.isascii():
                # A JSON escape of a lone surrogate (the stream counts such client_events) is no UTF-8 text.
                value = value.encode("utf-8", "replace").decode("utf-8")
            columns[f.name].append(value)
    return pa.table(columns, schema=schema)


def read_inputs(
    batch_events: str | os.PathLike,
    stream_sessions: str | os.PathLike,
    stream_late: str | os.PathLike,
    stream_rejected: str | os.PathLike | None = None,
    *,
    contract: SessionContract | None = None,
    now: datetime | None = None,
) -> HourInputs:
    """:class:`HourInputs` of the offline command's files; raises :class:`InputError` on bad input."""
    contract = contract or SessionContract()
    events, quarantined, copies, counts = read_raw_events(batch_events, now or datetime.now(UTC), contract)
    return HourInputs(
        batch_events=events,
        stream_sessions=read_stream_rows(stream_sessions, STREAM_SESSION_SCHEMA),
        stream_late=read_stream_rows(stream_late, LATE_SCHEMA),
        stream_rejected=(
            read_stream_rows(stream_rejected, REJECTED_SCHEMA)
            if stream_rejected is not None
            else REJECTED_SCHEMA.empty_table()
        ),
        quarantined=quarantined,
        raw_copies=copies,
        batch_counts=counts,
    )

"""The inputs of one hour's reconciliation, as local files or Arrow tables, and their DuckDB views.

The DAG fills :class:`HourInputs` from S3 (:mod:`include.reconciliation.s3_io`), the offline command from
local JSON-lines files (:mod:`include.reconciliation.offline`); both then call the same
:func:`include.reconciliation.reconcile.reconcile_hour`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from include.sessions.contract import LATE_FIELDS, REJECTED_FIELDS, SESSION_FIELDS

#: The compacted events' columns (include/compaction's Parquet schema).
EVENTS_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int32()),
        ("device_id", pa.string()),
        ("client_event", pa.string()),
        ("client_timestamp", pa.timestamp("ms", tz="UTC")),
        ("countrycode", pa.string()),
    ]
)
#: A stream session row (include/sql/flink/sinks.sql, sessions_sink without the partition columns).
STREAM_SESSION_SCHEMA = pa.schema(
    [
        (
            name,
            pa.int32()
            if name == "user_id"
            else pa.int64()
            if name in ("duration_ms", "event_count")
            else pa.string(),
        )
        for name in SESSION_FIELDS
    ]
)
LATE_SCHEMA = pa.schema([(name, pa.int32() if name == "user_id" else pa.string()) for name in LATE_FIELDS])
REJECTED_SCHEMA = pa.schema([(name, pa.string()) for name in REJECTED_FIELDS])
#: Records the batch path quarantined, as text the stream would have read (invalid UTF-8 replaced).
QUARANTINE_SCHEMA = pa.schema([("record", pa.string())])
#: event_ids that appear more than once in the raw data, with how many copies.
COPIES_SCHEMA = pa.schema([("event_id", pa.string()), ("copies", pa.int64())])

#: A relation: an Arrow table, or local files (Parquet for batch events, JSON lines for the stream's outputs).
Relation = pa.Table | Sequence[str | os.PathLike]


_LONE_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def stream_text(data: bytes) -> str:
    """A quarantined record as text that DuckDB's copy of the stream's rules reads the way the stream does.

    Invalid UTF-8 becomes U+FFFD (Flink's raw format); JSON escapes of unpaired surrogates (``\\ud800``), which
    Jackson decodes but DuckDB's JSON reader refuses, become ``\\ufffd``; an object with a repeated key is
    rewritten with the last value of each key (Jackson's and Python's reading; DuckDB's would take the first).
    """
    text = data.decode("utf-8", errors="replace")
    if "\\u" in text:
        text = _LONE_SURROGATE_ESCAPE.sub(r"\\ufffd", text)
    repeated = False

    def last_wins(pairs: list[tuple[str, object]]) -> dict:
        nonlocal repeated
        obj = dict(pairs)
        repeated = repeated or len(obj) != len(pairs)
        return obj

    try:
        obj = json.loads(text, object_pairs_hook=last_wins)
    except (ValueError, RecursionError):
        return text
    return json.dumps(obj, ensure_ascii=False) if repeated else text


#: A JSON escape of a surrogate (paired or not): the only text of a sink's line DuckDB's JSON reader may refuse.
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: object) -> object:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {k: _without_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    return value


def readable_jsonl(path: str | os.PathLike, directory: str | os.PathLike) -> str:
    """``path``, or a copy under ``directory`` whose lines DuckDB can read.

    Flink's JSON sinks (Jackson) write an unpaired surrogate in a string (a record the producer escaped as
    ``\\ud800``, which the stream accepts) as that escape; DuckDB's reader refuses the whole file. Only lines
    with a surrogate escape are decoded (Python's reading, which keeps them) and written again with each unpaired
    surrogate as U+FFFD, the character Flink itself substitutes for invalid UTF-8; every other byte is kept.
    """
    data = Path(path).read_bytes()
    if not _SURROGATE_ESCAPE_BYTES.search(data):
        return os.fspath(path)
    lines = []
    for line in data.splitlines(keepends=True):
        if _SURROGATE_ESCAPE_BYTES.search(line):
            try:
                obj = json.loads(line)
            except ValueError:
                lines.append(line)
                continue
            line = json.dumps(_without_lone_surrogates(obj), ensure_ascii=False).encode() + b"\n"
        lines.append(line)
    copy = Path(directory) / f"{abs(hash(os.fspath(path))):x}-{Path(path).name}"
    copy.write_bytes(b"".join(lines))
    return os.fspath(copy)


def _empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


@dataclass(frozen=True)
class HourInputs:
    """Everything one hour's reconciliation reads. Files may cover more than the hour; extra rows are ignored."""

    #: Typed events of the compacted hours H - gap ... H + 1 h + L (``EVENTS_SCHEMA``; Parquet files or a table).
    batch_events: Relation
    #: The stream's session rows (``SESSION_FIELDS``) of the partitions around H (JSON lines or a table).
    stream_sessions: Relation = field(default_factory=lambda: _empty(STREAM_SESSION_SCHEMA))
    #: The stream's late ledger (``LATE_FIELDS``).
    stream_late: Relation = field(default_factory=lambda: _empty(LATE_SCHEMA))
    #: The stream's rejected ledger (``REJECTED_FIELDS``).
    stream_rejected: Relation = field(default_factory=lambda: _empty(REJECTED_SCHEMA))
    #: Records the batch path quarantined (``QUARANTINE_SCHEMA``), to explain rule differences.
    quarantined: Relation = field(default_factory=lambda: _empty(QUARANTINE_SCHEMA))
    #: Extra copies of event_ids in the raw data (``COPIES_SCHEMA``), to explain duplicates.
    raw_copies: Relation = field(default_factory=lambda: _empty(COPIES_SCHEMA))
    #: Counts from the batch path worth reporting (e.g. records read, quarantined), copied into the totals.
    batch_counts: dict[str, int] = field(default_factory=dict)


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _paths(name: str, relation: Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(relation, str | os.PathLike):
        raise TypeError(f"{name} must be a list of files or an Arrow table, got the single path {relation!r}")
    paths = [str(Path(p)) for p in relation]
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"{name}: input file {p} does not exist")
    return paths


def _json_columns(schema: pa.Schema) -> str:
    types = {pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.string(): "VARCHAR"}
    return "{" + ", ".join(f"{_sql_str(f.name)}: {_sql_str(types[f.type])}" for f in schema) + "}"


def register(
    con: duckdb.DuckDBPyConnection, name: str, relation: Relation, schema: pa.Schema, file_format: str
) -> str:
    """Expose ``relation`` as view/table ``name`` with ``schema``'s columns; returns ``name``."""
    if isinstance(relation, pa.Table):
        missing = [f.name for f in schema if f.name not in relation.column_names]
        if missing:
            raise ValueError(f"{name}: the table has no column(s) {missing}; expected {schema.names}")
        con.register(name, relation.select(schema.names))
        return name
    paths = _paths(name, relation)
    if not paths:
        con.register(name, _empty(schema))
        return name
    if file_format not in ("parquet", "jsonl"):
        raise ValueError(f"file_format must be parquet or jsonl, got {file_format!r}")
    with tempfile.TemporaryDirectory(prefix="clickstream-reconcile-") as tmp:
        readable = paths if file_format == "parquet" else [readable_jsonl(p, tmp) for p in paths]
        files = "[" + ", ".join(_sql_str(p) for p in readable) + "]"
        if file_format == "parquet":
            source = f"read_parquet({files})"
        else:
            source = f"read_json({files}, format = 'newline_delimited', columns = {_json_columns(schema)})"
        # a view reads its files when queried: rewritten copies are read now, before they are removed
        kind = "VIEW" if readable == paths else "TABLE"
        con.execute(f"CREATE OR REPLACE TEMP {kind} {name} AS SELECT {', '.join(schema.names)} FROM {source}")
    return name


#: View names of the registered inputs, as the SQL templates receive them.
VIEWS = {
    "batch_events": ("batch_events_in", EVENTS_SCHEMA, "parquet"),
    "stream_sessions": ("stream_sessions_in", STREAM_SESSION_SCHEMA, "jsonl"),
    "stream_late": ("stream_late_in", LATE_SCHEMA, "jsonl"),
    "stream_rejected": ("stream_rejected_in", REJECTED_SCHEMA, "jsonl"),
    "quarantined": ("quarantined_in", QUARANTINE_SCHEMA, "jsonl"),
    "raw_copies": ("raw_copies_in", COPIES_SCHEMA, "parquet"),
}


def register_inputs(con: duckdb.DuckDBPyConnection, inputs: HourInputs) -> dict[str, str]:
    """Register every input of ``inputs``; returns {input name: view name}."""
    return {
        key: register(con, view, getattr(inputs, key), schema, file_format)
        for key, (view, schema, file_format) in VIEWS.items()
    }

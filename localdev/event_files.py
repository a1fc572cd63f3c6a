"""Strict reading of a local JSON-lines events file for offline sessionizing.

The engines would route a bad record to their rejected output; a person running the CLI on a file wants to
hear about it instead, so every line is checked first and the first problem is an error naming the line, the
field and the value.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from include.events_schema import CLIENT_EVENT_MAX_LEN, EVENT_FIELDS
from include.sessions.contract import LATE_MARGIN_MS, SessionContract
from localdev.reference import fields_of, reject_reason, timestamp_ms

_STRING_FIELDS = ("event_id", "device_id", "client_event", "client_timestamp", "countrycode")


class InputError(ValueError):
    """The input file has a bad line; the message names the file, the line, the field and the value."""


@dataclass(frozen=True)
class EventsFile:
    path: Path
    #: Non-blank lines, as read (without the newline), in file order.
    records: list[str]
    #: 1-based line number of each record.
    line_numbers: list[int]
    #: Epoch ms of each record's client_timestamp.
    event_ms: list[int]


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _RepeatedName(ValueError):
    def __init__(self, name: str, first: object, second: object) -> None:
        super().__init__(name)
        self.name, self.first, self.second = name, first, second


def _refuse_repeated_names(pairs: list[tuple[str, object]]) -> dict:
    """json.loads keeps the last of a repeated name, DuckDB's reader the first (and the compaction validator
    quarantines the record): a file with one is refused rather than read differently by the two engines."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: dict[str, object] = {}
        for name, value in pairs:
            if name in seen:
                raise _RepeatedName(name, seen[name], value)
            seen[name] = value
    return obj


def _is_unicode(text: str) -> bool:
    """False for a string holding a lone surrogate (a JSON escape like \\ud800): DuckDB cannot read it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_events_file(
    path: str | os.PathLike, contract: SessionContract, now_ms: int | None = None
) -> EventsFile:
    """Read and check every line; raise InputError at the first bad one."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"input file {source} does not exist or is not a file")
    records: list[str] = []
    line_numbers: list[int] = []
    event_ms: list[int] = []
    with open(source, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            where = f"{source} line {line_no}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise InputError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=_refuse_repeated_names)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{where}: not valid JSON ({exc.msg} at column {exc.colno}): {_short(line)}"
                ) from None
            except _RepeatedName as exc:
                raise InputError(
                    f"{where}: field {exc.name} appears more than once ({_short(exc.first)}, then "
                    f"{_short(exc.second)}): readers disagree on which one counts"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__} {_short(obj)}")
            unknown = sorted(set(obj) - set(EVENT_FIELDS))
            if unknown:
                raise InputError(f"{where}: unknown field {unknown[0]} = {_short(obj[unknown[0]])}")
            for name in EVENT_FIELDS:
                if name not in obj:
                    raise InputError(f"{where}: field {name} is missing")
            for name in _STRING_FIELDS:
                if not isinstance(obj[name], str):
                    raise InputError(f"{where}: {name} must be a string, got {_short(obj[name])}")
            for name in _STRING_FIELDS:
                if not obj[name].isascii() and not _is_unicode(obj[name]):
                    raise InputError(
                        f"{where}: {name} contains an unpaired surrogate escape, which is not valid Unicode: "
                        f"{name} = {_short(obj[name])}"
                    )
            user_id = obj["user_id"]
            if isinstance(user_id, bool) or not isinstance(user_id, int):
                raise InputError(f"{where}: user_id must be an integer, got {_short(user_id)}")
            failure = reject_reason(fields_of(obj), contract, now_ms)
            if failure is not None:
                name, reason = failure
                raise InputError(f"{where}: {reason}: {name} = {_short(obj.get(name))}")
            records.append(line)
            line_numbers.append(line_no)
            event_ms.append(timestamp_ms(obj["client_timestamp"]))
    return EventsFile(source, records, line_numbers, event_ms)


def check_time_order(events: EventsFile, contract: SessionContract) -> None:
    """Refuse input the streaming engine would call late: each event must be within the watermark delay
    (less the late margin) of the largest client_timestamp before it."""
    allowed = contract.watermark_delay_ms - LATE_MARGIN_MS
    max_ms, max_line = None, None
    for ms, line_no in zip(events.event_ms, events.line_numbers, strict=True):
        if max_ms is not None and max_ms - ms > allowed:
            raise InputError(
                f"{events.path} line {line_no}: client_timestamp is {max_ms - ms} ms before the one on line "
                f"{max_line}; --engine flink reads the file in order with a {contract.watermark_delay_ms} ms "
                "watermark delay and would call this event late: sort the file by client_timestamp"
            )
        if max_ms is None or ms > max_ms:
            max_ms, max_line = ms, line_no


# --- The DuckDB engine's reading: every line checked in SQL, Python only for a file with a suspicious line ---

#: A line that is certainly an event the checks above accept: one JSON object of exactly six members, each a
#: non-empty string without escapes or control characters or a positive integer (so Python's json and DuckDB's
#: reader see the same values). Anything else goes to :func:`read_events_file` for the verdict and the message.
_PLAIN_MEMBER = (
    r'(?:"(?:event_id|device_id|client_event|client_timestamp|countrycode)"[ \t]*:[ \t]*"[^"\\\x00-\x1f]+"'
    r'|"user_id"[ \t]*:[ \t]*[1-9][0-9]{0,9})'
)
_PLAIN_EVENT = rf"[ \t]*\{{[ \t]*(?:{_PLAIN_MEMBER}[ \t]*,[ \t]*){{5}}{_PLAIN_MEMBER}[ \t]*\}}[ \t]*[\r\n]*"
_PATHS = "[" + ", ".join(f"'$.{name}'" for name in EVENT_FIELDS) + "]"


@dataclass(frozen=True)
class LoadedEvents:
    """Where :func:`load_events_file` left the events, in the terms of ``include.sessions.batch``."""

    #: A relation (subquery) over the loaded table.
    relation: str
    #: "typed" when SQL proved every line good (typed columns, no JSON left to parse), else "raw".
    source_kind: str
    #: The file order column (copies of an event_id keep the first line).
    arrival_order: str


def _lines_table(data: bytes) -> pa.Table:
    """The file's lines (split at b"\\n" like iterating a binary file) as Arrow strings without copying, with
    1-based line numbers; raises ValueError when the bytes are not UTF-8."""
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    ends = newlines + 1
    if len(data) and (not len(newlines) or newlines[-1] != len(data) - 1):
        ends = np.r_[ends, len(data)]
    offsets = np.r_[0, ends].astype(np.int64)
    lines = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc)) from None
    numbers = np.arange(1, len(ends) + 1, dtype=np.int64)
    line_no = pa.Array.from_buffers(pa.int64(), len(ends), [None, pa.py_buffer(numbers)])  # no pandas import
    return pa.table({"line": lines, "line_no": line_no})


def load_events_file(
    con: duckdb.DuckDBPyConnection,
    path: str | os.PathLike,
    contract: SessionContract,
    name: str = "events_file",
    now_ms: int | None = None,
) -> LoadedEvents:
    """Check every line in DuckDB SQL and leave the events in table ``name``; the same errors as
    :func:`read_events_file`, which gives the verdict (and the message) only when SQL finds a line it cannot
    prove good. Returns the relation to sessionize with ``include.sessions.batch``."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"input file {source} does not exist or is not a file")
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        lines = _lines_table(source.read_bytes())
    except ValueError:
        read_events_file(source, contract, now_ms)  # raises, naming the line
        raise
    con.register(f"{name}_lines", lines)
    ts_format = "%Y-%m-%dT%H:%M:%S.%gZ"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        WITH classified AS (
            -- each line as read, with its newline: the tests allow for it, so no copy without it is made
            SELECT line, line_no,
                regexp_full_match(line, '[ \\t\\x0b\\x0c\\r\\n]*') AS blank,
                regexp_full_match(line, '{_PLAIN_EVENT}') AS plain
            FROM {name}_lines
        ),
        members AS (
            SELECT line_no, blank,
                CASE WHEN plain THEN json_extract_string(line, {_PATHS}) END AS v
            FROM classified
        )
        -- six members, each one of the six names, all six found: no name twice, user_id the only number
        SELECT line_no, blank,
            COALESCE(
                v[1] IS NOT NULL AND v[3] IS NOT NULL AND v[6] IS NOT NULL
                AND TRY_CAST(v[2] AS BIGINT) <= 2147483647
                AND strlen(v[4]) <= {CLIENT_EVENT_MAX_LEN}
                AND strftime(ts, '{ts_format}') = v[5]
                AND epoch_ms(ts) <= {now_ms + contract.max_future_skew_ms},
                FALSE
            ) AS good,
            v[1] AS event_id,
            TRY_CAST(v[2] AS INTEGER) AS user_id,
            v[3] AS device_id,
            v[4] AS client_event,
            ts AS client_timestamp,
            v[6] AS countrycode
        FROM (SELECT *, try_strptime(v[5], '{ts_format}') AS ts FROM members)
        """
    )
    (suspicious,) = con.execute(f"SELECT count(*) FROM {name} WHERE NOT good AND NOT blank").fetchone()
    if suspicious:
        read_events_file(source, contract, now_ms)  # raises at the first bad line, or accepts the file
        # lines only Python could prove good (escapes, spacing): the batch SQL reads the JSON text itself
        record = r"regexp_replace(line, '[\r\n]+$', '')"  # line.rstrip("\r\n")
        return LoadedEvents(f"(SELECT {record} AS record, line_no FROM {name}_lines)", "raw", "line_no")
    typed = ", ".join(EVENT_FIELDS)
    return LoadedEvents(f"(SELECT {typed}, line_no FROM {name} WHERE good)", "typed", "line_no")


# --- The Flink engine's checks: the same verdicts, no per-record Python for a file SQL proves good ---


def existing_file(path: str | os.PathLike) -> Path:
    """``path`` if it is a file, else the InputError the other checks give."""
    source = Path(path)
    if not source.is_file():
        raise InputError(f"input file {source} does not exist or is not a file")
    return source


def check_stream_file(path: str | os.PathLike, contract: SessionContract, now_ms: int | None = None) -> None:
    """What :func:`read_events_file` and :func:`check_time_order` refuse, refused the same way: every line and the
    time order are checked in DuckDB SQL; Python reads the file only to name the first bad line (or when SQL
    cannot prove a line good, as :func:`load_events_file` does). It runs while the Flink job starts: no progress
    bar on the terminal."""
    con = duckdb.connect(":memory:")
    try:
        try:
            con.execute("SET enable_progress_bar = false")
        except duckdb.InvalidInputException:
            # Refused as a "global option" once another DuckDB connection of this process has shown a bar (seen
            # in the full test suite); the bar is cosmetic, so the check goes on without switching it off.
            pass
        events = load_events_file(con, path, contract, now_ms=now_ms)
        if events.source_kind != "typed":  # Python already read every line: reuse its verdict and its order
            check_time_order(read_events_file(path, contract, now_ms), contract)
            return
        allowed = contract.watermark_delay_ms - LATE_MARGIN_MS
        (unordered,) = con.execute(
            f"""
            SELECT count(*) FROM (
                SELECT epoch_ms(client_timestamp) AS ms,
                    max(epoch_ms(client_timestamp)) OVER (
                        ORDER BY line_no ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newest_before
                FROM {events.relation}
            )
            WHERE newest_before - ms > {allowed}
            """
        ).fetchone()
    finally:
        con.close()
    if unordered:
        check_time_order(read_events_file(path, contract, now_ms), contract)  # raises, naming both lines

"""Strict reading of a local JSON-lines events file for offline sessionizing.

The engines would route a bad record to their rejected output; a person running the CLI on a file wants to
hear about it instead, so every line is checked first and the first problem is an error naming the line, the
field and the value.
"""

from __future__ import annotations

import json
import mmap
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from include.events_schema import CLIENT_EVENT_MAX_LEN, EVENT_FIELDS
from include.sessions.contract import LATE_MARGIN_MS, SessionContract
from include.sessions.vocabulary import enum_type, small_vocabularies
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


#: A line is proven good in one of two ways. The fast one, for a clean line (see _lines_table: no escape, so each
#: string's value is its text and holds no quote or backslash): its six values, as DuckDB's JSON reader gives them,
#: written back in the writers' own shape (json.dumps of the members in EVENT_FIELDS order, with ", " and ": " or
#: with "," and ":" between them) give the line again, byte for byte. So the line has no other member, no second
#: value and no odd spacing, and json.loads reads exactly those values.
def _writers_shape(compact: bool) -> str:
    colon, comma = (":", ",") if compact else (": ", ", ")
    parts = []
    for i, name in enumerate(EVENT_FIELDS):
        quote = "" if name == "user_id" else '"'
        parts += [f"'{'{' if i == 0 else comma}\"{name}\"{colon}{quote}'", f"v[{i + 1}]", f"'{quote}'"]
    return f"concat({', '.join(parts)}, '}}', chr(10))"


#: The other way, for any other line: one JSON object of exactly six members, each a non-empty string without
#: escapes or control characters or a positive integer (so Python's json and DuckDB's reader see the same values).
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
    #: "proven" when SQL proved every line good (typed columns and event_ms, no JSON left to parse), else "raw".
    source_kind: str
    #: The file order column (copies of an event_id keep the first line).
    arrival_order: str


_SCAN_BYTES = 1 << 22


def _odd_bytes(codes: np.ndarray) -> np.ndarray:
    """Positions of the bytes below a space and of the backslashes, found a few MB at a time (no temporary array
    as large as the file) on every core (NumPy lets go of the GIL; the first touch of each mapped page is part
    of the work)."""

    def scan(start: int) -> np.ndarray:
        chunk = codes[start : start + _SCAN_BYTES]
        return np.flatnonzero((chunk < 32) | (chunk == 92)) + start

    starts = range(0, len(codes), _SCAN_BYTES)
    if len(starts) < 2:
        return scan(0) if len(codes) else np.empty(0, np.intp)
    with ThreadPoolExecutor(min(len(starts), os.cpu_count() or 1)) as pool:
        return np.concatenate(list(pool.map(scan, starts)))


def _file_bytes(source: Path) -> bytes | mmap.mmap:
    """The file's bytes, mapped rather than copied (the Arrow lines point into them; an empty file cannot be
    mapped). The file must not shrink while it is read, as with any mapped file."""
    with open(source, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return b""
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


def _lines_table(data: bytes | mmap.mmap) -> pa.Table:
    """The file's lines (split at b"\\n" like iterating a binary file, each with its newline) as Arrow strings
    without copying, with 1-based line numbers and ``clean``: the line holds no backslash (so no JSON escape) and no
    control character but its newline (a carriage return just before it included). Raises ValueError when the
    bytes are not UTF-8."""
    codes = np.frombuffer(data, np.uint8)
    odd = _odd_bytes(codes)  # the newlines and, rarely, a backslash or anything else below a space
    is_newline = codes[odd] == 10
    newlines = odd[is_newline]
    unclean = odd[~is_newline]
    if len(unclean):
        after = np.minimum(unclean + 1, len(codes) - 1)
        crlf = (codes[unclean] == 13) & (codes[after] == 10) & (unclean + 1 < len(codes))
        unclean = unclean[~crlf]
    ends = newlines + 1
    if len(data) and (not len(newlines) or newlines[-1] != len(data) - 1):
        ends = np.r_[ends, len(data)]
    offsets = np.r_[0, ends].astype(np.int64)
    lines = pa.LargeStringArray.from_buffers(len(ends), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    try:
        lines.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise ValueError(str(exc)) from None
    clean = np.ones(len(ends), dtype=bool)
    clean[np.searchsorted(ends, unclean, side="right")] = False
    # from buffers: pa.array() of a NumPy array would import pandas (0.7 s)
    numbers = np.arange(1, len(ends) + 1, dtype=np.int64)
    line_no = pa.Array.from_buffers(pa.int64(), len(ends), [None, pa.py_buffer(numbers)])
    clean_bits = pa.py_buffer(np.packbits(clean, bitorder="little"))
    clean_column = pa.Array.from_buffers(pa.bool_(), len(ends), [None, clean_bits])
    return pa.table({"line": lines, "line_no": line_no, "clean": clean_column})


def _proof_sql(name: str, extract: str, contract: SessionContract, now_ms: int) -> str:
    """The statement leaving table ``name``: each line of ``{name}_lines`` with ``blank`` (a line Python skips),
    ``good`` (proven to pass every check of :func:`read_events_file`) and the typed values; ``extract`` reads the
    six members of a clean line that starts with "{" (a list of strings)."""
    ts_format = "%Y-%m-%dT%H:%M:%S.%gZ"
    return f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        WITH extracted AS (
            -- each line as read, with its newline: the checks allow for it, so no copy without it is made
            SELECT line, line_no, clean,
                CASE WHEN clean AND starts_with(line, '{{') THEN {extract} END AS v
            FROM {name}_lines
        ),
        shaped AS (
            SELECT line, line_no, clean, v,
                COALESCE(line = CASE WHEN substr(line, 13, 1) = ' ' THEN {_writers_shape(False)}
                    ELSE {_writers_shape(True)} END, FALSE) AS shaped
            FROM extracted
        ),
        members AS (
            SELECT line_no, blank,
                CASE WHEN shaped THEN v
                    WHEN NOT blank AND regexp_full_match(line, '{_PLAIN_EVENT}')
                    THEN json_extract_string(line, {_PATHS}) END AS v
            FROM (
                SELECT *,
                    -- only spaces (and the line end): a line Python skips
                    CASE WHEN shaped THEN FALSE ELSE clean AND trim(line, ' ' || chr(13) || chr(10)) = '' END
                        AS blank
                FROM shaped
            )
        )
        -- every string non-empty, user_id the canonical text of a positive INTEGER, the timestamp's text what
        -- formatting it gives (and a year Python has), not too far ahead: every reject rule passes
        SELECT line_no, blank,
            COALESCE(
                v[1] <> '' AND v[3] <> '' AND v[4] <> '' AND v[6] <> ''
                AND user_id >= 1 AND CAST(user_id AS VARCHAR) = v[2]
                AND strlen(v[4]) <= {CLIENT_EVENT_MAX_LEN}
                AND strftime(ts, '{ts_format}') = v[5] AND ts >= TIMESTAMP '0001-01-01'
                AND epoch_ms(ts) <= {now_ms + contract.max_future_skew_ms},
                FALSE
            ) AS good,
            -- an id that is a UUID as DuckDB writes one (lowercase, hyphens) as a UUID: they sort like their text
            -- and the session window sorts 16 bytes, not a string; any other id as its text
            CASE WHEN uuid_text = v[1] THEN event_uuid END AS event_uuid,
            CASE WHEN uuid_text = v[1] THEN NULL ELSE v[1] END AS event_text,
            user_id,
            v[3] AS device_id,
            v[4] AS client_event,
            epoch_ms(ts) AS event_ms,
            v[6] AS countrycode
        FROM (
            SELECT *, try_strptime(v[5], '{ts_format}') AS ts, TRY_CAST(v[2] AS INTEGER) AS user_id,
                TRY_CAST(v[1] AS UUID) AS event_uuid, CAST(TRY_CAST(v[1] AS UUID) AS VARCHAR) AS uuid_text
            FROM members
        )
        """


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
        lines = _lines_table(_file_bytes(source))
    except ValueError:
        read_events_file(source, contract, now_ms)  # raises, naming the line
        raise
    con.register(f"{name}_lines", lines)
    extract = f"json_extract_string(line, {_PATHS})"
    try:
        con.execute(_proof_sql(name, extract, contract, now_ms))
    except duckdb.InvalidInputException:
        # A line starting with "{" is not JSON. Only then is each line's reading wrapped in try() (it costs
        # about 10 % of the reading): the Python checks name that line anyway.
        con.execute(_proof_sql(name, f"try({extract})", contract, now_ms))
    [(suspicious, text_ids)] = con.execute(
        f"SELECT count_if(NOT good AND NOT blank), count_if(good AND event_text IS NOT NULL) FROM {name}"
    ).fetchall()

    if suspicious:
        read_events_file(source, contract, now_ms)  # raises at the first bad line, or accepts the file
        # lines only Python could prove good (escapes, spacing): the batch SQL reads the JSON text itself
        record = r"regexp_replace(line, '[\r\n]+$', '')"  # line.rstrip("\r\n")
        return LoadedEvents(f"(SELECT {record} AS record, line_no FROM {name}_lines)", "raw", "line_no")
    # The words of small vocabularies as ENUMs in the strings' order: the session window sorts and moves one byte
    # instead of a string per event, in the same order. A column with more words stays text.
    vocabularies = small_vocabularies(con, f"(SELECT * FROM {name} WHERE good)", _VOCABULARY_COLUMNS)
    # event_id as a UUID when every id is one as DuckDB writes it (see the proof: the same order, 16 bytes)
    columns = [
        "COALESCE(event_text, CAST(event_uuid AS VARCHAR)) AS event_id"
        if text_ids
        else "event_uuid AS event_id"
    ]
    for column in ("user_id", "device_id", "client_event", "countrycode", "event_ms"):
        words = vocabularies.get(column)
        columns.append(f"CAST({column} AS {enum_type(words)}) AS {column}" if words else column)
    return LoadedEvents(f"(SELECT {', '.join(columns)}, line_no FROM {name} WHERE good)", "proven", "line_no")


_VOCABULARY_COLUMNS = ("device_id", "client_event", "countrycode")


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
        if events.source_kind != "proven":  # Python already read every line: reuse its verdict and its order
            check_time_order(read_events_file(path, contract, now_ms), contract)
            return
        allowed = contract.watermark_delay_ms - LATE_MARGIN_MS
        (unordered,) = con.execute(
            f"""
            SELECT count(*) FROM (
                SELECT event_ms AS ms,
                    max(event_ms) OVER (
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

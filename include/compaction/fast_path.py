"""The vectorised fast path of validation: a block of raw lines -> the typed rows it can prove valid.

Almost every record is written by the producer in one canonical form, the exact bytes of::

    {"event_id":"<uuid>","user_id":<int>,"device_id":"<device>","client_event":"<event>",
     "client_timestamp":"<hour>:MM:SS.mmmZ","countrycode":"<CC>"}

One regular expression (RE2, run by Arrow over the whole block) accepts a line only when it has that form with
every value already in the shape the contract requires: no escapes, ASCII only, the six keys once each in
order, a UUID, a positive integer of at most ten digits, a known device, printable characters, a timestamp
inside the partition hour. A match is therefore valid JSON with exactly those fields, and because the form
is fixed, every value sits at an offset numpy can compute from the line's start and end: the values are
gathered with array operations, never parsed per record. The last checks the pattern cannot express (user_id
within 32 bits, the future skew, a known country, a non-blank client_event of at most 64 characters) are
array comparisons.

Every line the fast path does not prove valid - another key order, whitespace, escapes, non-ASCII text, a
wrong value, invalid UTF-8, a blank line - is returned as "slow" and goes, with its original bytes, to
:class:`~include.compaction.validation.RecordValidator`, which accepts it or gives the reason and message. A
line the fast path accepts gets exactly the row the validator would return for it (``tests/compaction``
compares the two on every kind of line).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.compaction import sort_keys
from include.compaction.errors import CompactionError
from include.compaction.layout import normalize_hour
from include.compaction.validation import ValidRow, epoch_ms
from include.events_schema import CLIENT_EVENT_MAX_LEN, COUNTRY_CODES, DEVICE_IDS, USER_ID_MAX

#: The typed columns of valid rows, as the spill stores them: event_id, device_id and countrycode as the
#: integers of :mod:`~include.compaction.sort_keys`, client_timestamp as epoch ms.
ROW_SCHEMA = pa.schema(
    [
        ("id_hi", pa.uint64()),
        ("id_lo", pa.uint64()),
        ("user_id", pa.int32()),
        ("device_id", pa.uint8()),
        ("client_event", pa.string()),
        ("ts_ms", pa.int64()),
        ("countrycode", pa.uint16()),
    ]
)

_HEX = "[0-9a-fA-F]"
#: JSON string characters the fast path accepts unescaped: printable ASCII except '"' and '\'.
_PLAIN_CHAR = r"[ !#-\[\]-~]"
_NEWLINE = ord("\n")

# Offsets inside a canonical line, from its start ...
_EVENT_ID = 13  # len('{"event_id":"')
_USER_ID = _EVENT_ID + 36 + len('","user_id":')
_AFTER_USER_ID = len(',"device_id":"')
_AFTER_DEVICE = len('","client_event":"')
# ... and from its end (the newline excluded).
_COUNTRY_FROM_END = len('CC"}')
_TIMESTAMP_FROM_END = len('2026-11-27T10:15:30.123Z","countrycode":"') + _COUNTRY_FROM_END
_CLIENT_EVENT_END_FROM_END = len('","client_timestamp":"') + _TIMESTAMP_FROM_END
#: Offsets of M, M, S, S, m, m, m inside the timestamp value 'YYYY-MM-DDTHH:MM:SS.mmmZ'.
_TS_DIGITS = np.array([14, 15, 17, 18, 20, 21, 22])
_TS_WEIGHTS = np.array([600_000, 60_000, 10_000, 1000, 100, 10, 1], dtype=np.int64)
#: First letter of each device -> (its code, its length).
_DEVICE_BY_FIRST = {d.encode()[0]: (sort_keys.DEVICE_CODES[d], len(d)) for d in DEVICE_IDS}
if len(_DEVICE_BY_FIRST) != len(DEVICE_IDS):  # pragma: no cover - a guard on the contract module
    raise ImportError(f"the fast path tells devices apart by their first letter, {DEVICE_IDS} share one")


def _country_table() -> np.ndarray:
    table = np.zeros(1 << 16, dtype=bool)
    for code in COUNTRY_CODES:
        table[code.encode()[0] << 8 | code.encode()[1]] = True
    return table


_COUNTRY_TABLE = _country_table()


def canonical_pattern(hour_start: datetime) -> str:
    """The RE2 pattern of a canonical valid line of ``hour_start`` (the trailing newline optional)."""
    hour = re.escape(normalize_hour(hour_start).strftime("%Y-%m-%dT%H"))
    devices = "|".join(re.escape(d) for d in DEVICE_IDS)
    uuid = "-".join(f"{_HEX}{{{n}}}" for n in (8, 4, 4, 4, 12))
    return (
        rf'^\{{"event_id":"{uuid}","user_id":[1-9][0-9]{{0,9}},"device_id":"(?:{devices})",'
        # at least one character; at most CLIENT_EVENT_MAX_LEN is checked on the lengths (a counted repetition
        # makes RE2 9 % slower over the whole block)
        rf'"client_event":"{_PLAIN_CHAR}+",'
        rf'"client_timestamp":"{hour}:[0-5][0-9]:[0-5][0-9]\.[0-9]{{3}}Z","countrycode":"[A-Z]{{2}}"\}}\n?$'
    )


@dataclass(frozen=True)
class ClassifiedBlock:
    """One block's lines split into the rows the fast path proved valid and the lines it leaves to Python."""

    #: Number of lines in the block.
    lines: int
    #: Typed rows (:data:`ROW_SCHEMA`) of the lines proven valid.
    valid: pa.Table
    #: 0-based index in the block of each valid row, in the same order.
    valid_lines: np.ndarray
    #: 0-based indices, ascending, of the lines the validator has to decide.
    slow_lines: np.ndarray
    #: Start offset of each line and its end (newline excluded), to slice a slow line's original bytes.
    starts: np.ndarray
    ends: np.ndarray


def validated_rows(rows: list[ValidRow]) -> pa.Table:
    """Rows the Python validator accepted, as a table of :data:`ROW_SCHEMA`."""
    ids = [sort_keys.split_uuid(row[0]) for row in rows]
    columns = [
        [i[0] for i in ids],
        [i[1] for i in ids],
        [row[1] for row in rows],
        [sort_keys.DEVICE_CODES[row[2]] for row in rows],
        [row[3] for row in rows],
        [row[4] for row in rows],
        [sort_keys.country_code(row[5]) for row in rows],
    ]
    return pa.Table.from_arrays(
        [pa.array(col, field.type) for col, field in zip(columns, ROW_SCHEMA, strict=True)], schema=ROW_SCHEMA
    )


class FastPath:
    """Classifies blocks of raw lines of one event hour; built once per compaction (the pattern and limits)."""

    def __init__(self, hour_start: datetime, now: datetime, max_future_skew: timedelta) -> None:
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got naive {now!r}")
        hour = normalize_hour(hour_start)
        self.pattern = canonical_pattern(hour)
        self._hour_ms = epoch_ms(hour)
        self._future_limit_ms = epoch_ms(now.astimezone(UTC) + max_future_skew)

    def classify(self, data: bytes) -> ClassifiedBlock:
        """Split ``data`` (whole lines separated by newlines; the last may lack its newline) into valid rows
        and the lines left to the validator."""
        buf = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(buf == _NEWLINE)
        ends = newlines if data.endswith(b"\n") else np.append(newlines, len(data))
        n = len(ends)
        starts = np.empty(n, dtype=np.int64)
        starts[:1] = 0
        starts[1:] = ends[:-1] + 1
        # Each line with its newline: consecutive offsets, no copy of the block.
        small = len(data) < 2**31  # a block grows past 2 GB only around a line that long
        offsets = np.append(starts, len(data)).astype(np.int32 if small else np.int64)
        kind = pa.binary() if small else pa.large_binary()
        lines = pa.Array.from_buffers(kind, n, [None, pa.py_buffer(offsets), pa.py_buffer(buf)])
        matched = pc.match_substring_regex(lines, self.pattern).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(matched)
        table, ok = self._typed_rows(buf, starts[rows], ends[rows])
        if not ok.all():
            matched[rows[~ok]] = False
            rows = rows[ok]
            table = table.filter(pa.array(ok))
        return ClassifiedBlock(
            lines=n,
            valid=table,
            valid_lines=rows,
            slow_lines=np.flatnonzero(~matched),
            starts=starts,
            ends=ends,
        )

    def _typed_rows(
        self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> tuple[pa.Table, np.ndarray]:
        """The typed values of canonical lines (matched by the pattern) and which of them pass the last checks."""
        n = len(starts)
        if n == 0:
            return ROW_SCHEMA.empty_table(), np.ones(0, dtype=bool)

        id_hi, id_lo = sort_keys.split_uuid_hex(buf[starts[:, None] + np.arange(_EVENT_ID, _EVENT_ID + 36)])

        digits = buf[starts[:, None] + np.arange(_USER_ID, _USER_ID + 11)]  # <= 10 digits, then ','
        is_digit = (digits >= ord("0")) & (digits <= ord("9"))
        user_len = np.argmin(is_digit, axis=1)
        user_id = np.zeros(n, dtype=np.int64)
        for j in range(10):
            in_number = j < user_len
            user_id = np.where(in_number, user_id * 10 + (digits[:, j].astype(np.int64) - ord("0")), user_id)

        device_start = starts + _USER_ID + user_len + _AFTER_USER_ID
        first = buf[device_start]
        device = np.zeros(n, dtype=np.uint8)
        device_len = np.zeros(n, dtype=np.int64)
        for letter, (code, length) in _DEVICE_BY_FIRST.items():
            is_device = first == letter
            device[is_device] = code
            device_len[is_device] = length

        event_start = device_start + device_len + _AFTER_DEVICE
        event_end = ends - _CLIENT_EVENT_END_FROM_END
        ts_start = ends - _TIMESTAMP_FROM_END
        country_start = ends - _COUNTRY_FROM_END
        # The offsets follow from the pattern; check the quotes around client_event in case they ever do not.
        if not ((buf[event_start - 1] == ord('"')).all() and (buf[event_end] == ord('"')).all()):
            raise CompactionError(
                "fast path: the offsets of canonical lines do not match the pattern (a bug)"
            )

        lengths = event_end - event_start
        event_offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=event_offsets[1:])
        gather = np.repeat(event_start - event_offsets[:-1], lengths) + np.arange(event_offsets[-1])
        event_bytes = buf[gather]
        not_blank = np.add.reduceat(event_bytes != ord(" "), event_offsets[:-1]) > 0
        client_event = pa.StringArray.from_buffers(
            n, pa.py_buffer(event_offsets.astype(np.int32)), pa.py_buffer(event_bytes)
        )

        ts_digits = buf[ts_start[:, None] + _TS_DIGITS].astype(np.int64) - ord("0")
        ts_ms = self._hour_ms + ts_digits @ _TS_WEIGHTS

        country = buf[country_start[:, None] + np.arange(2)]
        known_country = _COUNTRY_TABLE[(country[:, 0].astype(np.int32) << 8) | country[:, 1]]

        ok = (user_id <= USER_ID_MAX) & (ts_ms <= self._future_limit_ms) & known_country & not_blank
        ok &= lengths <= CLIENT_EVENT_MAX_LEN
        table = pa.Table.from_arrays(
            [
                pa.array(id_hi),
                pa.array(id_lo),
                pa.array(np.minimum(user_id, USER_ID_MAX).astype(np.int32)),  # rows over the max are not ok
                pa.array(device),
                client_event,
                pa.array(ts_ms),
                pa.array(sort_keys.country_codes(country)),
            ],
            schema=ROW_SCHEMA,
        )
        return table, ok

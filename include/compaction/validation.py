"""Validation of one raw clickstream record against the contract in :mod:`include.events_schema`.

Every rejection carries a reason code shared with the producer's fault injection (so its ground truth and the
quarantine can be compared record by record) and a detail naming the field and the offending value.

Decisions documented here because they shape what lands in the compacted table:

* Extra fields are quarantined as ``unexpected_field``: the contract is closed, and tolerating them would drop
  their data silently on the way to Parquet.
* ``client_event`` is free-form (new app versions add events); it only has to be a non-blank string of at most
  ``CLIENT_EVENT_MAX_LEN`` characters that is valid Unicode.
* ``event_id`` must be a UUID in the 8-4-4-4-12 hex form; upper-case hex is accepted and stored lower-case so
  deduplication compares canonical ids.
* A record has exactly one reason: the first failing check in this order: UTF-8, JSON, duplicate keys, object,
  missing fields, unexpected fields, JSON types of all fields, then the values in schema order (event_id,
  user_id, device_id, client_event, client_timestamp incl. partition hour and future skew, countrycode).
"""

from __future__ import annotations

import json
import json.scanner
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from include.compaction.layout import normalize_hour
from include.events_schema import (
    CLIENT_EVENT_MAX_LEN,
    CLIENT_TIMESTAMP_RE,
    COUNTRY_CODES,
    DEVICE_IDS,
    EVENT_FIELDS,
    USER_ID_MAX,
    USER_ID_MIN,
    parse_client_timestamp,
)

INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
DUPLICATE_FIELD = "duplicate_field"
MISSING_FIELD = "missing_field"
UNEXPECTED_FIELD = "unexpected_field"
WRONG_TYPE = "wrong_type"
UNPARSEABLE_TIMESTAMP = "unparseable_timestamp"
TIMESTAMP_NOT_UTC = "timestamp_not_utc"
TIMESTAMP_OUTSIDE_PARTITION = "timestamp_outside_partition"
TIMESTAMP_IN_FUTURE = "timestamp_in_future"
USER_ID_OUT_OF_RANGE = "user_id_out_of_range"
EMPTY_STRING = "empty_string"
STRING_TOO_LONG = "string_too_long"
UNKNOWN_DEVICE_ID = "unknown_device_id"
INVALID_COUNTRYCODE = "invalid_countrycode"
INVALID_EVENT_ID = "invalid_event_id"
#: Records found under Firehose's error prefix; the validator's finer reason is kept as their ``cause``.
FIREHOSE_PARTITIONING_FAILED = "firehose_partitioning_failed"

#: Every reason the validator can give a record.
RECORD_REASONS: tuple[str, ...] = (
    INVALID_UTF8,
    INVALID_JSON,
    DUPLICATE_FIELD,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    UNEXPECTED_FIELD,
    WRONG_TYPE,
    EMPTY_STRING,
    INVALID_EVENT_ID,
    USER_ID_OUT_OF_RANGE,
    UNKNOWN_DEVICE_ID,
    STRING_TOO_LONG,
    UNPARSEABLE_TIMESTAMP,
    TIMESTAMP_NOT_UTC,
    TIMESTAMP_OUTSIDE_PARTITION,
    TIMESTAMP_IN_FUTURE,
    INVALID_COUNTRYCODE,
)
QUARANTINE_REASONS: tuple[str, ...] = RECORD_REASONS + (FIREHOSE_PARTITIONING_FAILED,)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HOUR_MS = 3_600_000
_FIELDS_SET = frozenset(EVENT_FIELDS)
_STRING_FIELDS = tuple(f for f in EVENT_FIELDS if f != "user_id")
_NEVER = re.compile(r"(?!)")
_PLAIN_QUOTES = 2 * (len(EVENT_FIELDS) + len(_STRING_FIELDS))
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
# Canonical objects, so millions of rows share one string per device / country.
_DEVICES = {d: d for d in DEVICE_IDS}
_COUNTRIES = {c: c for c in COUNTRY_CODES}
_DEVICE_LIST = ", ".join(DEVICE_IDS)
_CLIENT_EVENT_CACHE_MAX = 4096


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was refused: a reason code plus a human message naming the field and value."""

    reason: str
    detail: str


#: A valid record: (event_id, user_id, device_id, client_event, client_timestamp as epoch ms, countrycode).
ValidRow = tuple[str, int, str, str, int, str]


class _DuplicateField(Exception):
    def __init__(self, name: str, first: object, second: object) -> None:
        super().__init__(name)
        self.name, self.first, self.second = name, first, second


class _InvalidConstant(ValueError):
    pass


def _pairs_hook(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                raise _DuplicateField(key, seen[key], value)
            seen[key] = value
    return obj


def _reject_constant(name: str) -> None:
    raise _InvalidConstant(f"{name} is not a JSON value")


def show(value: object, limit: int = 80) -> str:
    """repr() of a value, shortened so a detail message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "non-integer number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def epoch_ms(ts: datetime) -> int:
    return (ts - _EPOCH) // _MS


class RecordValidator:
    """Validates raw records for one event hour (or any hour when ``hour_start`` is None).

    Built once per compaction so the hot path only does dictionary lookups and string slicing; the full
    timestamp parser runs only for records outside the fast path.
    """

    def __init__(self, hour_start: datetime | None, now: datetime, max_future_skew: timedelta) -> None:
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got naive {now!r}")
        if hour_start is not None:
            hour_start = normalize_hour(hour_start)
            self._hour_ms: int | None = epoch_ms(hour_start)
            # The wire format within this hour: the hot path is one regex match, no datetime parsing.
            self._hour_ts_match = re.compile(
                re.escape(hour_start.strftime("%Y-%m-%dT%H")) + r":([0-5][0-9]):([0-5][0-9])\.([0-9]{3})Z\Z"
            ).match
        else:
            self._hour_ms = None
            self._hour_ts_match = _NEVER.match  # every timestamp takes the full parser
        self._hour_start = hour_start
        self._now = now.astimezone(UTC)
        self._skew = max_future_skew
        self._future_limit_ms = epoch_ms(self._now + max_future_skew)
        self._decoder = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_reject_constant)
        self._scan_plain = json.scanner.make_scanner(json.JSONDecoder(parse_constant=_reject_constant))
        self._client_events: dict[str, str] = {}

    def validate(self, data: bytes) -> ValidRow | Rejection:
        """Return the typed row of a valid record, or the :class:`Rejection` explaining why not."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejection(
                INVALID_UTF8,
                f"record is not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                f"({exc.reason})",
            )
        obj = self._parse_plain(text)
        if obj is None:
            try:
                obj = self._decoder.decode(text)
            except _DuplicateField as dup:
                return Rejection(
                    DUPLICATE_FIELD,
                    f"field {dup.name!r} appears more than once "
                    f"(values {show(dup.first)} and {show(dup.second)})",
                )
            except (ValueError, RecursionError) as exc:
                if not text.strip():
                    return Rejection(INVALID_JSON, "record is empty (blank line)")
                return Rejection(INVALID_JSON, f"record is not valid JSON ({exc}): {show(text)}")
        if type(obj) is not dict:
            return Rejection(
                NOT_AN_OBJECT,
                f"record is a JSON {json_type(obj)}, not an object with fields {', '.join(EVENT_FIELDS)}: "
                f"{show(obj)}",
            )
        if obj.keys() != _FIELDS_SET:
            missing = [f for f in EVENT_FIELDS if f not in obj]
            if missing:
                return Rejection(MISSING_FIELD, f"missing field(s) {', '.join(missing)}")
            extra = sorted(k for k in obj if k not in _FIELDS_SET)
            return Rejection(
                UNEXPECTED_FIELD,
                "unexpected field(s) " + ", ".join(f"{k}={show(obj[k], 40)}" for k in extra),
            )

        event_id = obj["event_id"]
        user_id = obj["user_id"]
        device_id = obj["device_id"]
        client_event = obj["client_event"]
        client_timestamp = obj["client_timestamp"]
        countrycode = obj["countrycode"]

        if type(user_id) is not int:
            return Rejection(
                WRONG_TYPE, f"user_id must be a JSON integer, got {json_type(user_id)} {show(user_id)}"
            )
        for name in _STRING_FIELDS:
            value = obj[name]
            if type(value) is not str:
                return Rejection(
                    WRONG_TYPE, f"{name} must be a JSON string, got {json_type(value)} {show(value)}"
                )

        if not event_id:
            return Rejection(EMPTY_STRING, "event_id is an empty string")
        if len(event_id) != 36 or not _UUID_RE.match(event_id):
            return Rejection(
                INVALID_EVENT_ID, f"event_id {show(event_id)} is not a UUID (8-4-4-4-12 hex digits)"
            )

        if not USER_ID_MIN <= user_id <= USER_ID_MAX:
            return Rejection(
                USER_ID_OUT_OF_RANGE,
                f"user_id must be between {USER_ID_MIN} and {USER_ID_MAX}, got {show(user_id)}",
            )

        device = _DEVICES.get(device_id)
        if device is None:
            if not device_id:
                return Rejection(EMPTY_STRING, "device_id is an empty string")
            return Rejection(UNKNOWN_DEVICE_ID, f"device_id {show(device_id)} is not one of {_DEVICE_LIST}")

        if not client_event or client_event.isspace():
            return Rejection(EMPTY_STRING, f"client_event is blank: {show(client_event)}")
        if len(client_event) > CLIENT_EVENT_MAX_LEN:
            return Rejection(
                STRING_TOO_LONG,
                f"client_event has {len(client_event)} characters, more than {CLIENT_EVENT_MAX_LEN}: "
                f"{show(client_event)}",
            )
        cached = self._client_events.get(client_event)
        if cached is None:
            if not client_event.isascii():
                try:
                    client_event.encode("utf-8")
                except UnicodeEncodeError:
                    return Rejection(
                        INVALID_UTF8,
                        f"client_event {show(client_event)} contains an unpaired surrogate escape, "
                        "which is not valid Unicode",
                    )
            if len(self._client_events) < _CLIENT_EVENT_CACHE_MAX:
                self._client_events[client_event] = client_event
        else:
            client_event = cached

        ts = client_timestamp
        m = self._hour_ts_match(ts)
        if m is not None:
            ts_ms = self._hour_ms + int(m[1]) * 60_000 + int(m[2]) * 1000 + int(m[3])
        else:
            parsed = self._parse_timestamp(ts)
            if isinstance(parsed, Rejection):
                return parsed
            ts_ms = parsed
        if ts_ms > self._future_limit_ms:
            return Rejection(
                TIMESTAMP_IN_FUTURE,
                f"client_timestamp {show(ts)} is more than {self._skew} after the processing time "
                f"{self._now.isoformat()}",
            )

        country = _COUNTRIES.get(countrycode)
        if country is None:
            if not countrycode:
                return Rejection(EMPTY_STRING, "countrycode is an empty string")
            return Rejection(
                INVALID_COUNTRYCODE,
                f"countrycode {show(countrycode)} is not an ISO 3166-1 alpha-2 code (upper case, e.g. 'DE')",
            )

        return (event_id.lower(), user_id, device, client_event, ts_ms, country)

    def _parse_plain(self, text: str) -> dict | None:
        """Fast path for well-formed records: a C-built dict, no per-object hook; None means "full parser".

        Duplicate keys are invisible to a plain dict, so the fast path is taken only when they are impossible:
        with no backslash every quote delimits a string, and 22 quotes are exactly the 6 distinct keys plus
        the 5 string values the types require - no room for a repeated key.
        """
        try:
            obj, end = self._scan_plain(text, 0)
        except (StopIteration, ValueError, RecursionError):
            return None
        if (
            end == len(text)
            and type(obj) is dict
            and obj.keys() == _FIELDS_SET
            and text.count('"') == _PLAIN_QUOTES
            and "\\" not in text
            and type(obj["user_id"]) is int
            and type(obj["event_id"]) is str
            and type(obj["device_id"]) is str
            and type(obj["client_event"]) is str
            and type(obj["client_timestamp"]) is str
            and type(obj["countrycode"]) is str
        ):
            return obj
        return None

    def _parse_timestamp(self, ts: str) -> int | Rejection:
        """The slow path: tell a wrong hour from a non-UTC form from garbage, with a message for each."""
        if not ts:
            return Rejection(EMPTY_STRING, "client_timestamp is an empty string")
        if ts.isascii() and CLIENT_TIMESTAMP_RE.match(ts):
            try:
                ms = epoch_ms(parse_client_timestamp(ts))
            except ValueError:
                return Rejection(
                    UNPARSEABLE_TIMESTAMP, f"client_timestamp {show(ts)} is not a valid date and time"
                )
            if self._hour_ms is not None and not self._hour_ms <= ms < self._hour_ms + _HOUR_MS:
                return Rejection(
                    TIMESTAMP_OUTSIDE_PARTITION,
                    f"client_timestamp {show(ts)} is outside the partition hour "
                    f"{self._hour_start.strftime('%Y-%m-%dT%H')}:00Z",
                )
            return ms
        if ts.isascii() and len(ts) > 10:
            try:
                datetime.fromisoformat(ts)
            except ValueError:
                pass
            else:
                return Rejection(
                    TIMESTAMP_NOT_UTC,
                    f"client_timestamp {show(ts)} is ISO-8601 but not UTC with milliseconds and a trailing Z "
                    "(like 2026-11-27T10:15:30.123Z)",
                )
        return Rejection(
            UNPARSEABLE_TIMESTAMP,
            f"client_timestamp {show(ts)} is not an ISO-8601 timestamp like 2026-11-27T10:15:30.123Z",
        )

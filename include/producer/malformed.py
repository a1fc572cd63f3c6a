"""Malformed records, one defect each, built from a valid event so they look like a real buggy client's.

Each reason code has several variants chosen deterministically. Unless the defect is about the timestamp or
the JSON itself, the record keeps the event's valid client_timestamp, so Firehose partitions it into the
event's hour and the compaction of that hour must quarantine it. Variants are picked so the compaction's
validator (first failing check wins) gives exactly the code the producer tags: for example a timestamp that
``datetime.fromisoformat`` accepts is ``timestamp_not_utc``, never ``unparseable_timestamp``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from include.events_schema import EVENT_FIELDS, USER_ID_MAX

Builder = Callable[[dict, bytes, float], tuple[bytes, str | None]]


def dumps(obj: object) -> bytes:
    """Compact JSON as the producer writes it (NaN allowed: one variant needs it)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _pick(variants: tuple, u: float) -> tuple[object, float]:
    """Choose a variant by ``u`` and return a fresh uniform from its remainder for further choices."""
    scaled = u * len(variants)
    index = min(int(scaled), len(variants) - 1)
    return variants[index], scaled - index


def _with(event: dict, field: str, value: object) -> dict:
    out = dict(event)
    out[field] = value
    return out


def _invalid_json(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    variant, w = _pick(("truncated", "extra_brace", "python_repr", "nan"), u)
    if variant == "truncated":
        # Any strict prefix of an object is invalid JSON: its closing brace is missing.
        data = canonical[: 1 + int(w * (len(canonical) - 2))]
    elif variant == "extra_brace":
        data = canonical + b"}"
    elif variant == "python_repr":
        data = str(event).encode()
    else:
        data = dumps(_with(event, "user_id", float("nan")))
    return data, None


def _not_an_object(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    variant, _ = _pick(("array", "number", "string", "null"), u)
    value = {
        "array": [event[f] for f in EVENT_FIELDS],
        "number": event["user_id"],
        "string": event["client_event"],
        "null": None,
    }[variant]
    return dumps(value), None


def _missing_field(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    field, _ = _pick(EVENT_FIELDS, u)
    out = {k: v for k, v in event.items() if k != field}
    return dumps(out), None if field == "event_id" else event["event_id"]


_WRONG_TYPES = (
    ("user_id", "abc"),
    ("user_id", True),
    ("user_id", 12.5),
    ("device_id", 1),
    ("client_event", ["view_cart"]),
    ("countrycode", 49),
    ("event_id", 12345),
)


def _wrong_type(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    (field, value), _ = _pick(_WRONG_TYPES, u)
    return dumps(_with(event, field, value)), None if field == "event_id" else event["event_id"]


def _unparseable_timestamp(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    ts = event["client_timestamp"]  # 2026-11-27T10:15:30.123Z
    variant, _ = _pick(("bad_minute", "zulu_suffix", "words", "day_first"), u)
    bad = {
        # Shaped like the wire format and in the right hour, so it lands in the hour's partition.
        "bad_minute": ts[:14] + "75" + ts[16:],
        "zulu_suffix": ts + "ulu",
        # Not ISO at all: Firehose cannot partition these and sends them to its error prefix.
        "words": "yesterday evening",
        "day_first": f"{ts[8:10]}/{ts[5:7]}/{ts[0:4]} {ts[11:19]}",
    }[variant]
    return dumps(_with(event, "client_timestamp", bad)), event["event_id"]


def _timestamp_not_utc(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    ts = event["client_timestamp"]
    variant, _ = _pick(("plus_two", "minus_five", "no_millis", "micros", "plus_zero"), u)
    # The UTC digits are kept so the record still partitions into the event's hour.
    bad = {
        "plus_two": ts[:23] + "+02:00",
        "minus_five": ts[:23] + "-05:00",
        "no_millis": ts[:19] + "Z",
        "micros": ts[:23] + "456Z",
        "plus_zero": ts[:23] + "+00:00",
    }[variant]
    return dumps(_with(event, "client_timestamp", bad)), event["event_id"]


def _unknown_device_id(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    value, _ = _pick(("smartwatch", "tv", "Mobile", "COMPUTER", "phone"), u)
    return dumps(_with(event, "device_id", value)), event["event_id"]


def _invalid_countrycode(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    value, _ = _pick(("UK", "XX", "EU", "lower", "USA"), u)
    if value == "lower":
        value = event["countrycode"].lower()
    return dumps(_with(event, "countrycode", value)), event["event_id"]


def _user_id_out_of_range(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    value, _ = _pick((0, -1, "negated", USER_ID_MAX + 1), u)
    if value == "negated":
        value = -event["user_id"]
    return dumps(_with(event, "user_id", value)), event["event_id"]


_EMPTY = (
    ("client_event", ""),
    ("client_event", "   "),
    ("device_id", ""),
    ("countrycode", ""),
    ("event_id", ""),
)


def _empty_string(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    (field, value), _ = _pick(_EMPTY, u)
    return dumps(_with(event, field, value)), None if field == "event_id" else event["event_id"]


def _invalid_utf8(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    variant, _ = _pick(("ff", "bad_continuation", "surrogate", "cut_sequence", "escaped_surrogate"), u)
    name = event["client_event"]
    if variant == "escaped_surrogate":
        # Valid UTF-8 bytes, but the JSON escape decodes to an unpaired surrogate: not valid Unicode.
        data = dumps(_with(event, "client_event", "X")).replace(b'"X"', b'"' + name.encode() + b'\\ud800"')
        return data, event["event_id"]
    bad = {
        "ff": b"\xff",
        "bad_continuation": b"\xc3\x28",
        "surrogate": b"\xed\xa0\x80",
        "cut_sequence": b"\xe2\x82",
    }
    inner = name.encode()
    split = len(inner) // 2
    value = b'"' + inner[:split] + bad[variant] + inner[split:] + b'"'
    data = dumps(_with(event, "client_event", "X")).replace(b'"X"', value)
    return data, None


def _duplicate_field(event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    field, _ = _pick(("user_id", "client_event", "countrycode", "device_id"), u)
    other = {
        "user_id": event["user_id"] % USER_ID_MAX + 1,
        "client_event": "checkout" if event["client_event"] != "checkout" else "view_cart",
        "countrycode": "DE" if event["countrycode"] != "DE" else "FR",
        "device_id": "tablet" if event["device_id"] != "tablet" else "mobile",
    }[field]
    data = canonical[:-1] + b"," + dumps(field) + b":" + dumps(other) + b"}"
    return data, event["event_id"]


BUILDERS: dict[str, Builder] = {
    "invalid_json": _invalid_json,
    "not_an_object": _not_an_object,
    "missing_field": _missing_field,
    "wrong_type": _wrong_type,
    "unparseable_timestamp": _unparseable_timestamp,
    "timestamp_not_utc": _timestamp_not_utc,
    "unknown_device_id": _unknown_device_id,
    "invalid_countrycode": _invalid_countrycode,
    "user_id_out_of_range": _user_id_out_of_range,
    "empty_string": _empty_string,
    "invalid_utf8": _invalid_utf8,
    "duplicate_field": _duplicate_field,
}


def build(kind: str, event: dict, canonical: bytes, u: float) -> tuple[bytes, str | None]:
    """The malformed bytes of ``kind`` made from ``event``, and the event_id a parser still finds in them."""
    try:
        builder = BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown malformed kind {kind!r}; known kinds are {', '.join(BUILDERS)}") from None
    return builder(event, canonical, u)


def partition_key_for(data: bytes) -> str:
    """str(user_id) when the record carries an integer user_id, else a stable key from the record's hash."""
    try:
        # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        obj = None
    if type(obj) is dict:
        user_id = obj.get("user_id")
        if type(user_id) is int:
            return str(user_id)
    return "x-" + hashlib.blake2b(data, digest_size=8).hexdigest()

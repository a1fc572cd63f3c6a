"""Every quarantine reason, one record each, with the detail naming the field and the value."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from include.compaction import validation as v
from include.compaction.validation import RecordValidator, Rejection

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
GOOD = {
    "event_id": "3f0c2a9e-8d1b-4c6e-9a7f-1b2c3d4e5f60",
    "user_id": 123456,
    "device_id": "mobile",
    "client_event": "view_beer_details",
    "client_timestamp": "2026-11-27T10:15:30.123Z",
    "countrycode": "DE",
}
GOOD_MS = int(datetime(2026, 11, 27, 10, 15, 30, 123000, tzinfo=UTC).timestamp() * 1000)


def with_(**changes) -> bytes:
    record = {**GOOD, **changes}
    return json.dumps(record).encode()


def without(field: str) -> bytes:
    return json.dumps({k: val for k, val in GOOD.items() if k != field}).encode()


# (case id, raw bytes, expected reason, fragments the detail must contain)
CASES = [
    ("bad-utf8-byte", b'{"event_id": "\xff\xfe"}', v.INVALID_UTF8, ["0xff", "offset 14"]),
    ("lone-surrogate", with_(client_event="\ud800x"), v.INVALID_UTF8, ["client_event", "surrogate"]),
    ("truncated", b'{"event_id": "3f0c2a9e', v.INVALID_JSON, ["not valid JSON", '{"event_id"']),
    ("blank", b"   ", v.INVALID_JSON, ["empty"]),
    ("nan", with_()[:-1] + b', "x": NaN}', v.INVALID_JSON, ["NaN"]),
    ("trailing-garbage", with_() + b" }", v.INVALID_JSON, ["Extra data"]),
    ("array", b"[1, 2]", v.NOT_AN_OBJECT, ["array", "[1, 2]"]),
    ("number", b"42", v.NOT_AN_OBJECT, ["integer", "42"]),
    (
        "duplicate-key",
        with_()[:-1] + b', "countrycode": "FR"}',
        v.DUPLICATE_FIELD,
        ["'countrycode'", "'DE'", "'FR'"],
    ),
    ("missing", without("countrycode"), v.MISSING_FIELD, ["countrycode"]),
    ("unexpected", with_(referrer="ad"), v.UNEXPECTED_FIELD, ["referrer", "'ad'"]),
    ("user-id-string", with_(user_id="abc"), v.WRONG_TYPE, ["user_id", "string", "'abc'"]),
    ("user-id-numeric-string", with_(user_id="42"), v.WRONG_TYPE, ["user_id", "'42'"]),
    ("user-id-bool", with_(user_id=True), v.WRONG_TYPE, ["user_id", "boolean", "True"]),
    ("user-id-float", with_(user_id=42.0), v.WRONG_TYPE, ["user_id", "non-integer number", "42.0"]),
    ("device-number", with_(device_id=5), v.WRONG_TYPE, ["device_id", "JSON string", "integer 5"]),
    ("timestamp-null", with_(client_timestamp=None), v.WRONG_TYPE, ["client_timestamp", "null"]),
    ("event-id-empty", with_(event_id=""), v.EMPTY_STRING, ["event_id"]),
    ("device-empty", with_(device_id=""), v.EMPTY_STRING, ["device_id"]),
    ("client-event-empty", with_(client_event=""), v.EMPTY_STRING, ["client_event"]),
    ("client-event-blank", with_(client_event="  "), v.EMPTY_STRING, ["client_event", "'  '"]),
    ("timestamp-empty", with_(client_timestamp=""), v.EMPTY_STRING, ["client_timestamp"]),
    ("country-empty", with_(countrycode=""), v.EMPTY_STRING, ["countrycode"]),
    ("event-id-junk", with_(event_id="not-a-uuid"), v.INVALID_EVENT_ID, ["event_id", "'not-a-uuid'"]),
    (
        "event-id-no-hyphens",
        with_(event_id="3f0c2a9e8d1b4c6e9a7f1b2c3d4e5f60"),
        v.INVALID_EVENT_ID,
        ["event_id", "3f0c2a9e8d1b4c6e9a7f1b2c3d4e5f60"],
    ),
    ("user-id-zero", with_(user_id=0), v.USER_ID_OUT_OF_RANGE, ["user_id", "got 0"]),
    ("user-id-negative", with_(user_id=-5), v.USER_ID_OUT_OF_RANGE, ["user_id", "got -5"]),
    ("user-id-too-big", with_(user_id=2**31), v.USER_ID_OUT_OF_RANGE, ["user_id", "2147483648"]),
    ("device-phone", with_(device_id="phone"), v.UNKNOWN_DEVICE_ID, ["device_id", "'phone'"]),
    ("client-event-long", with_(client_event="x" * 65), v.STRING_TOO_LONG, ["client_event", "65 characters"]),
    ("timestamp-junk", with_(client_timestamp="yesterday"), v.UNPARSEABLE_TIMESTAMP, ["'yesterday'"]),
    (
        "timestamp-feb-30",
        with_(client_timestamp="2026-02-30T10:00:00.000Z"),
        v.UNPARSEABLE_TIMESTAMP,
        ["client_timestamp", "2026-02-30T10:00:00.000Z"],
    ),
    (
        "timestamp-minute-60",
        with_(client_timestamp="2026-11-27T10:60:00.000Z"),
        v.UNPARSEABLE_TIMESTAMP,
        ["2026-11-27T10:60:00.000Z"],
    ),
    (
        "timestamp-offset",
        with_(client_timestamp="2026-11-27T12:15:30.123+02:00"),
        v.TIMESTAMP_NOT_UTC,
        ["client_timestamp", "+02:00"],
    ),
    (
        "timestamp-zero-offset",
        with_(client_timestamp="2026-11-27T10:15:30.123+00:00"),
        v.TIMESTAMP_NOT_UTC,
        ["+00:00"],
    ),
    (
        "timestamp-no-ms",
        with_(client_timestamp="2026-11-27T10:15:30Z"),
        v.TIMESTAMP_NOT_UTC,
        ["'2026-11-27T10:15:30Z'"],
    ),
    (
        "timestamp-naive",
        with_(client_timestamp="2026-11-27T10:15:30.123"),
        v.TIMESTAMP_NOT_UTC,
        ["'2026-11-27T10:15:30.123'"],
    ),
    (
        "timestamp-next-hour",
        with_(client_timestamp="2026-11-27T11:00:00.000Z"),
        v.TIMESTAMP_OUTSIDE_PARTITION,
        ["2026-11-27T11:00:00.000Z", "2026-11-27T10:00Z"],
    ),
    (
        "timestamp-previous-hour",
        with_(client_timestamp="2026-11-27T09:59:59.999Z"),
        v.TIMESTAMP_OUTSIDE_PARTITION,
        ["2026-11-27T09:59:59.999Z"],
    ),
    ("country-xx", with_(countrycode="XX"), v.INVALID_COUNTRYCODE, ["countrycode", "'XX'"]),
    ("country-lower", with_(countrycode="de"), v.INVALID_COUNTRYCODE, ["'de'"]),
    ("country-alpha3", with_(countrycode="DEU"), v.INVALID_COUNTRYCODE, ["'DEU'"]),
]


@pytest.fixture(scope="module")
def validator() -> RecordValidator:
    return RecordValidator(HOUR, NOW, timedelta(minutes=5))


@pytest.mark.parametrize(("data", "reason", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rejection_reason_and_detail(validator, data, reason, fragments):
    result = validator.validate(data)
    assert isinstance(result, Rejection), f"expected {reason}, got valid row {result}"
    assert result.reason == reason, result.detail
    for fragment in fragments:
        assert fragment in result.detail, f"{fragment!r} not in {result.detail!r}"


def test_every_record_reason_is_exercised():
    covered = {c[2] for c in CASES} | {v.TIMESTAMP_IN_FUTURE}  # future has its own test (needs another `now`)
    assert covered == set(v.RECORD_REASONS)


def test_producer_fault_codes_are_known():
    producer_codes = {
        "invalid_json",
        "not_an_object",
        "missing_field",
        "wrong_type",
        "unparseable_timestamp",
        "timestamp_not_utc",
        "unknown_device_id",
        "invalid_countrycode",
        "user_id_out_of_range",
        "empty_string",
        "invalid_utf8",
        "duplicate_field",
    }
    assert producer_codes <= set(v.QUARANTINE_REASONS)


def test_timestamp_in_future_uses_now_plus_skew():
    now = datetime(2026, 11, 27, 10, 10, tzinfo=UTC)
    validator = RecordValidator(HOUR, now, timedelta(minutes=5))
    at_limit = validator.validate(with_(client_timestamp="2026-11-27T10:15:00.000Z"))
    assert isinstance(at_limit, tuple)
    late = validator.validate(with_(client_timestamp="2026-11-27T10:15:00.001Z"))
    assert isinstance(late, Rejection)
    assert late.reason == v.TIMESTAMP_IN_FUTURE
    assert "2026-11-27T10:15:00.001Z" in late.detail and "0:05:00" in late.detail


def test_valid_record_is_typed(validator):
    row = validator.validate(with_())
    assert row == (GOOD["event_id"], 123456, "mobile", "view_beer_details", GOOD_MS, "DE")


@pytest.mark.parametrize(
    ("ts", "offset_ms"),
    [("2026-11-27T10:00:00.000Z", 0), ("2026-11-27T10:59:59.999Z", 3_599_999)],
)
def test_partition_boundaries_are_inclusive_exclusive(validator, ts, offset_ms):
    row = validator.validate(with_(client_timestamp=ts))
    assert row[4] == int(HOUR.timestamp() * 1000) + offset_ms


def test_user_id_bounds_accepted(validator):
    assert validator.validate(with_(user_id=1))[1] == 1
    assert validator.validate(with_(user_id=2_147_483_647))[1] == 2_147_483_647


def test_upper_case_uuid_is_normalised(validator):
    row = validator.validate(with_(event_id=GOOD["event_id"].upper()))
    assert row[0] == GOOD["event_id"]


def test_free_form_client_events_are_accepted(validator):
    assert validator.validate(with_(client_event="new_feature_x"))[3] == "new_feature_x"
    assert validator.validate(with_(client_event="añadir_cerveza 🍺"))[3] == "añadir_cerveza 🍺"
    assert validator.validate(with_(client_event="x" * 64))[3] == "x" * 64


def test_formatting_and_escapes_take_the_slow_path_with_same_result(validator):
    pretty = json.dumps(GOOD, indent=1).replace("\n", " ").encode()
    escaped = with_(client_event='say "prost"\\now')
    assert validator.validate(pretty) == validator.validate(with_())
    assert validator.validate(escaped)[3] == 'say "prost"\\now'
    assert validator.validate(with_() + b"\r")[0] == GOOD["event_id"]


def test_duplicate_key_is_caught_even_with_wrong_types_that_balance_the_quotes(validator):
    # 22 quotes like a valid record, but one string value replaced by a number and a repeated key added.
    data = (
        b'{"event_id":"3f0c2a9e-8d1b-4c6e-9a7f-1b2c3d4e5f60","user_id":1,"device_id":5,'
        b'"client_event":"x","client_timestamp":"2026-11-27T10:15:30.123Z","countrycode":"DE","user_id":2}'
    )
    assert data.count(b'"') == 22
    result = validator.validate(data)
    assert result.reason == v.DUPLICATE_FIELD and "'user_id'" in result.detail


def test_any_hour_validator_skips_the_partition_check():
    validator = RecordValidator(None, NOW, timedelta(minutes=5))
    row = validator.validate(with_(client_timestamp="2026-11-27T03:00:00.000Z"))
    assert row[4] == int(datetime(2026, 11, 27, 3, tzinfo=UTC).timestamp() * 1000)
    assert validator.validate(with_(client_timestamp="2026-11-27T03:00:00Z")).reason == v.TIMESTAMP_NOT_UTC


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="hour_start must be the start of an hour"):
        RecordValidator(HOUR + timedelta(minutes=1), NOW, timedelta(minutes=5))
    with pytest.raises(ValueError, match="hour_start must be timezone-aware"):
        RecordValidator(datetime(2026, 11, 27, 10), NOW, timedelta(minutes=5))
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        RecordValidator(HOUR, datetime(2026, 11, 27, 12), timedelta(minutes=5))

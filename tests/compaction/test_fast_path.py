"""The vectorised fast path against the Python validator: what it accepts, it types exactly as the validator.

Every line the fast path accepts must be a line the validator accepts with the same row; every other line is
left to the validator (so reasons and messages stay the validator's). The tests also pin which lines take the
fast path, so a pattern that silently stopped matching (everything in Python again) fails here.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from include.compaction import sort_keys
from include.compaction.fast_path import FastPath, canonical_pattern, validated_rows
from include.compaction.validation import RecordValidator, Rejection
from include.events_schema import COUNTRY_CODES

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
SKEW = timedelta(minutes=5)
UUID = "3f0c2a9e-8d1b-4c6e-9a7f-1b2c3d4e5f60"


def canonical(
    event_id: str = UUID,
    user_id: str = "123456",
    device_id: str = "mobile",
    client_event: str = "view_beer_details",
    client_timestamp: str = "2026-11-27T10:15:30.123Z",
    countrycode: str = "DE",
) -> bytes:
    """The producer's exact byte form, with each value inserted verbatim (so it can also be made invalid)."""
    return (
        f'{{"event_id":"{event_id}","user_id":{user_id},"device_id":"{device_id}",'
        f'"client_event":"{client_event}","client_timestamp":"{client_timestamp}","countrycode":"{countrycode}"}}'
    ).encode("utf-8", "surrogatepass")


# Lines in the canonical form that are valid: the fast path must take them.
FAST = {
    "plain": canonical(),
    "upper-case-uuid": canonical(event_id=UUID.upper()),
    "user-id-min": canonical(user_id="1"),
    "user-id-max": canonical(user_id="2147483647"),
    "ten-digit-user-id": canonical(user_id="1000000000"),
    "computer": canonical(device_id="computer"),
    "tablet": canonical(device_id="tablet"),
    "one-char-event": canonical(client_event="x"),
    "64-char-event": canonical(client_event="e" * 64),
    "event-with-spaces-and-symbols": canonical(client_event=" add to cart! #1 {x}:[y] "),
    "hour-start": canonical(client_timestamp="2026-11-27T10:00:00.000Z"),
    "hour-end": canonical(client_timestamp="2026-11-27T10:59:59.999Z"),
    "country-ZW": canonical(countrycode="ZW"),
}

# Lines the fast path must leave to the validator: invalid ones, and valid ones in another form.
SLOW = {
    "user-id-over-max": canonical(user_id="2147483648"),
    "user-id-ten-nines": canonical(user_id="9999999999"),
    "user-id-eleven-digits": canonical(user_id="10000000000"),
    "user-id-zero": canonical(user_id="0"),
    "user-id-leading-zero": canonical(user_id="042"),
    "user-id-negative": canonical(user_id="-5"),
    "user-id-float": canonical(user_id="1.0"),
    "user-id-exponent": canonical(user_id="1e3"),
    "user-id-string": canonical(user_id='"42"'),
    "blank-event": canonical(client_event="   "),
    "empty-event": canonical(client_event=""),
    "65-char-event": canonical(client_event="e" * 65),
    "unicode-event": canonical(client_event="café"),
    "escaped-quote-event": canonical(client_event='a\\"b'),
    "escaped-unicode-event": canonical(client_event="\\u0041"),
    "lone-surrogate-escape": canonical(client_event="\\ud800x"),
    "raw-tab-in-event": canonical(client_event="a\tb"),
    "del-in-event": canonical(client_event="a\x7fb"),
    "unknown-device": canonical(device_id="phone"),
    "upper-device": canonical(device_id="Mobile"),
    "unknown-country": canonical(countrycode="XX"),
    "lower-country": canonical(countrycode="de"),
    "previous-hour": canonical(client_timestamp="2026-11-27T09:59:59.999Z"),
    "next-hour": canonical(client_timestamp="2026-11-27T11:00:00.000Z"),
    "minute-60": canonical(client_timestamp="2026-11-27T10:60:00.000Z"),
    "no-millis": canonical(client_timestamp="2026-11-27T10:15:30Z"),
    "offset-not-z": canonical(client_timestamp="2026-11-27T10:15:30.123+00:00"),
    "short-uuid": canonical(event_id=UUID[:-1]),
    "non-hex-uuid": canonical(event_id="g" + UUID[1:]),
    "whitespace-form": canonical().replace(b",", b", ").replace(b'":', b'": '),
    "reordered-keys": b'{"user_id":1,' + canonical().replace(b'"user_id":123456,', b"")[1:],
    "duplicate-key": canonical()[:-1] + b',"countrycode":"FR"}',
    "trailing-content": canonical() + b" x",
    "trailing-space": canonical() + b" ",
    "carriage-return": canonical() + b"\r",
    "leading-space": b" " + canonical(),
    "invalid-utf8": canonical().replace(b"view", b"vi\xffw"),
    "latin1-byte": canonical().replace(b"view", b"vi\xe9w"),
    "nul-byte": canonical().replace(b"view", b"vi\x00w"),
    "blank-line": b"",
    "spaces-line": b"   ",
    "not-json": b"hello",
    "array": b"[1,2]",
    "very-long-line": canonical(client_event="x" * 200_000),
    "truncated": canonical()[:-1],
}


def classify(lines: list[bytes], *, trailing_newline: bool = True, now: datetime = NOW):
    data = b"\n".join(lines) + (b"\n" if trailing_newline else b"")
    return FastPath(HOUR, now, SKEW).classify(data)


def as_validator_rows(table) -> list[tuple]:
    columns = [
        sort_keys.uuid_strings(table.column("id_hi").to_numpy(), table.column("id_lo").to_numpy()),
        table.column("user_id"),
        sort_keys.device_strings(table.column("device_id").to_numpy()),
        table.column("client_event"),
        table.column("ts_ms"),
        sort_keys.country_strings(table.column("countrycode").to_numpy()),
    ]
    return list(zip(*(c.to_pylist() for c in columns), strict=True))


def test_the_invalid_utf8_case_really_is_invalid():
    with pytest.raises(UnicodeDecodeError):
        SLOW["invalid-utf8"].decode("utf-8")


@pytest.mark.parametrize("name", sorted(FAST))
def test_canonical_valid_lines_take_the_fast_path_with_the_validators_row(name):
    block = classify([FAST[name]])
    assert block.slow_lines.tolist() == [] and block.valid_lines.tolist() == [0]
    expected = RecordValidator(HOUR, NOW, SKEW).validate(FAST[name])
    assert not isinstance(expected, Rejection), expected
    assert as_validator_rows(block.valid) == [expected]


@pytest.mark.parametrize("name", sorted(SLOW))
def test_other_lines_are_left_to_the_validator(name):
    block = classify([FAST["plain"], SLOW[name], FAST["tablet"]])
    assert block.slow_lines.tolist() == [1]
    assert block.valid_lines.tolist() == [0, 2]
    start, end = int(block.starts[1]), int(block.ends[1])
    assert (b"\n".join([FAST["plain"], SLOW[name], FAST["tablet"]]) + b"\n")[start:end] == SLOW[name]


def test_a_record_beyond_the_future_skew_is_left_to_the_validator():
    early_now = HOUR + timedelta(minutes=20)
    inside = canonical(client_timestamp="2026-11-27T10:25:00.000Z")  # exactly now + 5 min: allowed
    beyond = canonical(client_timestamp="2026-11-27T10:25:00.001Z")
    block = classify([inside, beyond], now=early_now)
    assert (block.valid_lines.tolist(), block.slow_lines.tolist()) == ([0], [1])
    validator = RecordValidator(HOUR, early_now, SKEW)
    assert as_validator_rows(block.valid) == [validator.validate(inside)]
    assert validator.validate(beyond).reason == "timestamp_in_future"


def test_line_offsets_with_and_without_a_final_newline():
    lines = [FAST["plain"], b"", SLOW["whitespace-form"], FAST["computer"]]
    for trailing in (True, False):
        block = classify(lines, trailing_newline=trailing)
        data = b"\n".join(lines) + (b"\n" if trailing else b"")
        assert block.lines == 4
        assert [data[s:e] for s, e in zip(block.starts, block.ends, strict=True)] == lines
        assert (block.valid_lines.tolist(), block.slow_lines.tolist()) == ([0, 3], [1, 2])


def test_random_canonical_lines_agree_with_the_validator():
    """Many random values in the canonical form: every fast row equals the validator's, every slow line is one
    the validator rejects (each value is drawn so that some are valid and some just outside the rules)."""
    rng = random.Random(11)
    countries = sorted(COUNTRY_CODES) + ["XX", "QQ", "AA"]
    printable = [chr(c) for c in range(0x20, 0x7F) if chr(c) not in '"\\']
    lines = []
    for _ in range(5000):
        hex_id = "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(32))
        uuid = "-".join([hex_id[:8], hex_id[8:12], hex_id[12:16], hex_id[16:20], hex_id[20:]])
        user = str(
            rng.choice([rng.randint(1, 2**31 - 1), rng.randint(2**31 - 10, 2**31 + 10), rng.randint(1, 9)])
        )
        event = "".join(rng.choice(printable) for _ in range(rng.choice([1, 5, 17, 64, 65])))
        if rng.random() < 0.02:
            event = " " * rng.randint(1, 3)
        ts = f"2026-11-27T10:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
        lines.append(
            canonical(
                uuid, user, rng.choice(["computer", "mobile", "tablet"]), event, ts, rng.choice(countries)
            )
        )
    block = classify(lines)
    validator = RecordValidator(HOUR, NOW, SKEW)
    expected = [validator.validate(x) for x in lines]
    valid = [i for i, e in enumerate(expected) if not isinstance(e, Rejection)]
    assert block.valid_lines.tolist() == valid  # every valid canonical line is on the fast path
    assert as_validator_rows(block.valid) == [expected[i] for i in valid]
    assert block.slow_lines.tolist() == [i for i, e in enumerate(expected) if isinstance(e, Rejection)]
    assert 0 < len(block.slow_lines) < len(lines) // 2


def test_validated_rows_and_fast_rows_have_one_schema():
    row = RecordValidator(HOUR, NOW, SKEW).validate(FAST["upper-case-uuid"])
    table = validated_rows([row])
    assert table.schema == classify([FAST["plain"]]).valid.schema
    assert as_validator_rows(table) == [row]


def test_event_ids_round_trip_and_sort_like_their_strings():
    rng = random.Random(3)
    ids = sorted(
        "-".join("".join(rng.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12))
        for _ in range(2000)
    ) + ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]
    matrix = np.frombuffer("".join(ids).upper().encode(), dtype=np.uint8).reshape(len(ids), 36)
    hi, lo = sort_keys.split_uuid_hex(matrix)
    assert [(int(h), int(lo_)) for h, lo_ in zip(hi, lo, strict=True)] == [
        sort_keys.split_uuid(i) for i in ids
    ]
    assert sort_keys.uuid_strings(hi, lo).to_pylist() == ids
    pairs = list(zip(hi.tolist(), lo.tolist(), strict=True))
    assert sorted(range(len(ids)), key=lambda k: pairs[k]) == sorted(range(len(ids)), key=lambda k: ids[k])


def test_device_and_country_codes_round_trip_and_sort_like_their_strings():
    devices = sorted(sort_keys.DEVICE_CODES)
    assert (
        sort_keys.device_strings(np.array([sort_keys.DEVICE_CODES[d] for d in devices])).to_pylist()
        == devices
    )
    assert sorted(sort_keys.DEVICE_CODES.values()) == [sort_keys.DEVICE_CODES[d] for d in devices]
    countries = sorted(COUNTRY_CODES)
    letters = np.frombuffer("".join(countries).encode(), dtype=np.uint8).reshape(len(countries), 2)
    codes = sort_keys.country_codes(letters)
    assert codes.tolist() == [sort_keys.country_code(c) for c in countries] == sorted(codes.tolist())
    assert sort_keys.country_strings(codes).to_pylist() == countries


def test_the_pattern_is_for_the_given_hour():
    assert "2026\\-11\\-27T10" in canonical_pattern(HOUR)
    assert classify([canonical(client_timestamp="2026-11-27T10:15:30.123Z")]).valid.num_rows == 1
    other = FastPath(HOUR + timedelta(hours=1), NOW, SKEW).classify(canonical() + b"\n")
    assert other.slow_lines.tolist() == [0]


# --- compact_hour: the fast path and the validator make the same hour ------------------------------------


def run(s3, **options):
    from include.compaction import CompactionOptions, compact_hour
    from tests.compaction.helpers import BUCKET, SETTINGS

    return compact_hour(
        s3, BUCKET, HOUR, settings=SETTINGS, now=NOW, code_version="t", options=CompactionOptions(**options)
    )


def published(s3, result) -> tuple[list[dict], list[dict]]:
    import gzip
    import io
    import json

    import pyarrow.parquet as pq

    from tests.compaction.helpers import BUCKET

    def body(key):
        return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    rows = pq.read_table(io.BytesIO(body(result.data_keys[0]))).to_pylist()
    quarantine = [
        json.loads(x) for q in result.quarantine_keys for x in gzip.decompress(body(q)).splitlines()
    ]
    return rows, quarantine


def hour_records(rng: random.Random) -> list[dict]:
    from tests.compaction.helpers import event

    records = [
        event(HOUR, offset_ms=rng.randrange(3_600_000), user_id=rng.randint(1, 50), seed=str(i))
        for i in range(300)
    ]
    records += [dict(r) for r in rng.sample(records, 30)]  # redelivered copies
    conflicting = dict(records[0], countrycode="FR")  # same id and time, another payload
    records.insert(5, conflicting)
    rng.shuffle(records)
    return records


def test_canonical_and_reformatted_records_compact_to_the_same_hour(s3):
    """The same records once in the producer's form (fast path) and once with spaces (all in Python)."""
    import json

    from tests.compaction.helpers import BUCKET, put_raw

    records = hour_records(random.Random(5))
    bad = [b"not json", canonical(user_id="0"), b""]
    compact = [json.dumps(r, separators=(",", ":")).encode() for r in records] + bad
    spaced = [json.dumps(r).encode() for r in records] + bad
    key = put_raw(s3, HOUR, compact)
    fast = run(s3)
    fast_rows, fast_quarantine = published(s3, fast)
    s3.delete_object(Bucket=BUCKET, Key=key)
    put_raw(s3, HOUR, spaced)
    slow = run(s3)
    slow_rows, slow_quarantine = published(s3, slow)

    assert fast.uncompressed_bytes < slow.uncompressed_bytes  # really two different inputs
    assert fast_rows == slow_rows and len(fast_rows) == 300
    assert fast.content_checksum == slow.content_checksum
    for name in (
        "lines_read",
        "valid",
        "duplicates_removed",
        "duplicates_conflicting",
        "quarantined_by_reason",
    ):
        assert getattr(fast, name) == getattr(slow, name), name
    assert fast.duplicates_conflicting == 1
    assert [(q["reason"], q["line"], q["detail"]) for q in fast_quarantine] == [
        (q["reason"], q["line"], q["detail"]) for q in slow_quarantine
    ]


def test_a_tie_between_a_fast_row_and_a_python_row_goes_to_the_earlier_line(s3):
    import json

    from tests.compaction.helpers import event, put_raw

    first = event(HOUR, offset_ms=1000, countrycode="IE")
    second = dict(first, countrycode="FR")  # same event_id and timestamp, later line
    put_raw(s3, HOUR, [json.dumps(first).encode(), json.dumps(second, separators=(",", ":")).encode()])
    rows, _ = published(s3, run(s3))
    assert [r["countrycode"] for r in rows] == ["IE"]
    put_raw(s3, HOUR, [json.dumps(second, separators=(",", ":")).encode(), json.dumps(first).encode()])
    rows, _ = published(s3, run(s3))
    assert [r["countrycode"] for r in rows] == ["FR"]


def test_blocks_threads_and_chunks_do_not_change_the_result(s3, monkeypatch):
    """Small read blocks split objects (lines across block ends); 1 or 3 threads give the same bytes."""
    import json

    from include.compaction import raw_objects
    from tests.compaction.helpers import put_raw

    rng = random.Random(8)
    for part in range(3):
        records = [json.dumps(r, separators=(",", ":")).encode() for r in hour_records(rng)]
        records[7:7] = [b"{broken", json.dumps({"a": 1}).encode(), canonical(countrycode="XX")]
        put_raw(s3, HOUR, records, arrival=f"0{part}-00")
    reference = run(s3, validation_threads=1)
    expected = published(s3, reference)
    monkeypatch.setattr(raw_objects, "READ_BLOCK", 1000)
    for threads, chunk_rows in ((1, 7), (3, 100_000), (3, 50)):
        result = run(s3, validation_threads=threads, chunk_rows=chunk_rows)
        assert published(s3, result) == expected
        assert result.content_checksum == reference.content_checksum
        assert result.uncompressed_bytes == reference.uncompressed_bytes
        assert result.quarantined_by_reason == reference.quarantined_by_reason
    assert reference.quarantined_by_reason == {
        "invalid_json": 3,
        "missing_field": 3,
        "invalid_countrycode": 3,
    }

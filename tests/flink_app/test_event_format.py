"""The ``clickstream-event`` source format gives, in one parse, what the SQL it replaced computed per record.

Both readings run in one Flink job over the same file of awkward records: the 'raw' format with one
``JSON_VALUE(record, '$.<field>')`` per field and the former "one JSON object alone" expression (the record
wrapped in an array with an end marker after it), against the format's columns. Every record must give the
same values in both.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from include.flink_app import flink_job, format_jar
from include.sessions.templates import FLINK_TS_FORMAT

MARKER = "clickstream:end-of-record"
GOOD = {
    "event_id": "e-1",
    "user_id": 42,
    "device_id": "ios",
    "client_event": "click",
    "client_timestamp": "2026-11-27T10:15:30.123Z",
    "countrycode": "DE",
}

#: One record per line (bytes: some lines are not UTF-8). Each probes a way JSON_VALUE reads a record.
RECORDS: list[bytes] = [
    json.dumps(GOOD).encode(),
    b"  \t" + json.dumps(GOOD).encode() + b"  ",  # JSON whitespace around the object
    json.dumps(GOOD).encode() + b"}",  # content after the object: members still read, not one object
    json.dumps(GOOD).encode() + json.dumps(GOOD).encode(),
    json.dumps(GOOD).encode() + b", 1",
    json.dumps(GOOD).encode() + b" 5",
    json.dumps(GOOD).encode() + b"]",
    json.dumps(GOOD)[:-1].encode(),  # truncated
    b"[1, 2]",
    b'"just a string"',
    b"42",
    b"null",
    b"not json at all",
    b"   ",
    b"\xef\xbb\xbf" + json.dumps(GOOD).encode(),  # a byte order mark
    b'{"event_id": "\xff\xfe", "user_id": 1}',  # not UTF-8
    b'{"event_id": "a", "event_id": "b", "user_id": 7}',  # duplicate member: the last wins
    b'{"event_id": null, "user_id": {"a": 1}, "device_id": [1], "client_event": true, "countrycode": false}',
    b'{"user_id": 4.0, "device_id": 1e3, "client_event": -0, "countrycode": 1.50}',
    b'{"user_id": 12345678901234567890123, "device_id": 2147483648, "client_event": -17}',
    b'{"user_id": "0042", "event_id": "caf\\u00e9 \\u0000 \\n", "countrycode": "\\ud83d\\ude00"}',
    b'{"nested": {"event_id": "x"}, "event_id": "outer"}',
    b'{"event_id": "a",}',  # trailing comma
    b"{\"event_id\": 'a'}",  # single quotes
    b'{"event_id": "a" /* comment */}',
    b'{"user_id": NaN}',
    b"{}",
    b'{"event_id": "\\ud800", "device_id": "a?b", "client_event": "\\u007f\\u0080", "countrycode": "\\udc00?"}',
    '{"countrycode": "\u00e9\u4e2d"}'.encode(),
]


def _old_columns() -> str:
    fields = ", ".join(f"JSON_VALUE(record, '$.{name}')" for name in flink_job.EVENT_FIELDS)
    alone = (
        "COALESCE(REGEXP(record, '^[ \\t\\n\\r]*\\{') AND JSON_QUERY('[' || record || "
        f"',\"{MARKER}\"]', '$[1:]') = '[\"{MARKER}\"]', FALSE)"
    )
    return f"record, {alone}, {fields}"


def _columns() -> str:
    return ", ".join(["record", f"COALESCE({flink_job.JSON_OBJECT_COLUMN}, FALSE)", *flink_job.EVENT_FIELDS])


def _read_both(path: Path) -> tuple[list[tuple], list[tuple]]:
    jar = format_jar.cached()
    t_env = flink_job.create_table_env(
        flink_job.with_jar({"parallelism.default": "1", "table.local-time-zone": "UTC"}, jar)
    )
    physical = ", ".join(
        ["record STRING", f"{flink_job.JSON_OBJECT_COLUMN} BOOLEAN"]
        + [f"{name} STRING" for name in flink_job.EVENT_FIELDS]
    )
    t_env.execute_sql(
        f"CREATE TABLE raw_lines (record STRING) WITH ('connector' = 'filesystem', 'path' = '{path}', "
        "'format' = 'raw')"
    )
    t_env.execute_sql(
        f"CREATE TABLE parsed_lines ({physical}) WITH ('connector' = 'filesystem', 'path' = '{path}', "
        f"'format' = '{flink_job.SOURCE_FORMAT}')"
    )
    with t_env.execute_sql(f"SELECT {_old_columns()} FROM raw_lines").collect() as rows:
        old = [tuple(row) for row in rows]
    with t_env.execute_sql(f"SELECT {_columns()} FROM parsed_lines").collect() as rows:
        new = [tuple(row) for row in rows]
    return old, new


@pytest.mark.jvm
def test_format_columns_equal_json_value_and_the_one_object_check(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n".join(RECORDS) + b"\n")
    old, new = _read_both(path)
    assert len(old) == len(RECORDS)
    for line_no, (before, after) in enumerate(zip(old, new, strict=True), 1):
        assert after == before, f"line {line_no}: {RECORDS[line_no - 1]!r}"
    # The probes reach every branch: valid objects, objects with trailing content, values that are not objects.
    alone = [row[1] for row in new]
    assert alone[:2] == [True, True] and not any(alone[2:7])
    assert new[2][2:] == before_members(GOOD)


def before_members(event: dict) -> tuple:
    return tuple(None if event.get(n) is None else str(event[n]) for n in flink_job.EVENT_FIELDS)


@pytest.mark.jvm
def test_a_record_followed_by_the_end_marker_is_no_longer_one_object(tmp_path):
    """The wrapped-array check let one shape through (the record itself ending in ,"<marker>"]); the format,
    which reads the record alone, refuses it like every other reader of the lake."""
    path = tmp_path / "records.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + f',"{MARKER}"]'.encode() + b"\n")
    old, new = _read_both(path)
    assert old[0][1] is True and new[0][1] is False
    assert old[0][2:] == new[0][2:]


#: Timestamps the format reads itself (client_timestamp_ms set): the wire format's plainest form.
PLAIN_TIMES = [
    "2026-11-27T10:15:30.123Z",
    "1970-01-01T00:00:00.000Z",
    "9999-12-31T23:59:59.999Z",
    "2024-02-29T12:00:00.000Z",
    "2000-02-29T00:00:00.001Z",
]
#: Everything else is left to the SQL (client_timestamp_ms NULL), valid or not.
OTHER_TIMES = [
    "1969-12-31T23:59:59.999Z",  # valid, before the years the format reads
    "0999-01-01T00:00:00.000Z",
    "10000-01-01T00:00:00.000Z",
    "2023-02-29T12:00:00.000Z",
    "1900-02-29T12:00:00.000Z",
    "2026-02-30T00:00:00.000Z",
    "2026-13-01T00:00:00.000Z",
    "2026-00-10T00:00:00.000Z",
    "2026-11-00T00:00:00.000Z",
    "2026-11-27T24:00:00.000Z",
    "2026-11-27T23:60:00.000Z",
    "2026-11-27T23:59:60.000Z",
    "2026-11-27t10:15:30.123Z",
    "2026-11-27T10:15:30.123z",
    "2026-11-27T10:15:30.123+00:00",
    "2026-11-27T10:15:30Z",
    "2026-11-27 10:15:30.123Z",
    "2026-11-27T10:15:30.1234Z",
    " 2026-11-27T10:15:30.12Z",
    "2026-11-27T10:15:30.-12Z",
    "+026-11-27T10:15:30.123Z",
    "\uff12\uff10\uff12\uff16-11-27T10:15:30.123Z",  # full-width digits
    "\u0662\u0660\u0662\u0666-11-27T10:15:30.123Z",  # Arabic-Indic digits
    1732700000000,
    None,
]


@pytest.mark.jvm
def test_format_reads_plain_timestamps_as_the_sql_would_and_leaves_the_rest_to_it(tmp_path):
    """client_timestamp_ms is set only where the SQL's own check (the text formats back to itself) passes and
    its parse gives that instant; the job's rowtime and rules take it instead of parsing and formatting."""
    path = tmp_path / "times.jsonl"
    times = PLAIN_TIMES + OTHER_TIMES
    path.write_text("".join(json.dumps({**GOOD, "client_timestamp": t}) + "\n" for t in times))
    jar = format_jar.cached()
    t_env = flink_job.create_table_env(
        flink_job.with_jar({"parallelism.default": "1", "table.local-time-zone": "UTC"}, jar)
    )
    t_env.execute_sql(
        f"CREATE TABLE parsed_lines (client_timestamp STRING, {flink_job.WIRE_TIME_MS_COLUMN} BIGINT) WITH "
        f"('connector' = 'filesystem', 'path' = '{path}', 'format' = '{flink_job.SOURCE_FORMAT}')"
    )
    ts, fmt, ms = "client_timestamp", FLINK_TS_FORMAT, flink_job.WIRE_TIME_MS_COLUMN
    query = (
        f"SELECT {ms}, COALESCE(DATE_FORMAT(TO_TIMESTAMP_LTZ({ts}, {fmt}, 'UTC'), {fmt}) = {ts}, FALSE), "
        f"TO_TIMESTAMP_LTZ({ms}, 3) = TO_TIMESTAMP_LTZ({ts}, {fmt}, 'UTC') FROM parsed_lines"
    )
    with t_env.execute_sql(query).collect() as rows:
        got = [tuple(row) for row in rows]
    assert len(got) == len(times)
    for t, (millis, valid, same_instant) in zip(times, got, strict=True):
        if t in PLAIN_TIMES:
            assert millis is not None and valid and same_instant, t
        else:
            assert millis is None, t
    assert got[0][0] == 1_795_774_530_123  # 2026-11-27T10:15:30.123Z
    # the SQL still finds the valid ones among the rest
    assert [t for t, row in zip(times, got, strict=True) if t in OTHER_TIMES and row[1]] == [
        "1969-12-31T23:59:59.999Z",
        "0999-01-01T00:00:00.000Z",
    ]


@pytest.mark.slow
def test_format_jar_build_is_deterministic_and_registers_the_format(tmp_path):
    first = format_jar.build(tmp_path / "a" / format_jar.JAR_NAME)
    second = format_jar.build(tmp_path / "b" / format_jar.JAR_NAME)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as jar:
        names = jar.namelist()
        services = jar.read("META-INF/services/org.apache.flink.table.factories.Factory").decode()
    assert names[0] == "META-INF/MANIFEST.MF"
    assert "clickstream/flink/EventRecordDeserializer.class" in names
    assert services.strip() == "clickstream.flink.EventRecordFormatFactory"
    assert format_jar.JAR_NAME == flink_job.FORMAT_JAR

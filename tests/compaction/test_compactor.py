"""compact_hour against moto's in-process S3: dedup, order, schema, quarantine, manifest, publish, reruns."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import random
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.compaction import (
    EVENTS_SCHEMA,
    CompactionError,
    CompactionOptions,
    CountMismatch,
    RawObjectUnreadable,
    compact_hour,
    content_checksum_of_table,
    dedup_sort,
    find_late_objects,
    hour_is_compacted,
    layout,
    publish,
    read_manifest,
)
from include.compaction.validation import FIREHOSE_PARTITIONING_FAILED
from tests.compaction.helpers import BUCKET, SETTINGS, event, line, put_errors, put_raw


def run(s3, hour, now, **options):
    return compact_hour(
        s3,
        BUCKET,
        hour,
        settings=SETTINGS,
        now=now,
        code_version="test-1",
        options=CompactionOptions(**options),
    )


def read_table(s3, key) -> pa.Table:
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))


def read_quarantine(s3, key) -> list[dict]:
    data = gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    return [json.loads(x) for x in data.decode().splitlines()]


def all_keys(s3) -> list[str]:
    return [o["Key"] for o in layout.list_objects(s3, BUCKET, "")]


def test_dedup_keeps_the_earliest_event_time(s3, hour, now):
    early = event(hour, offset_ms=1_000, event_id="11111111-1111-4111-8111-111111111111", client_event="a")
    late = {
        **early,
        "client_timestamp": event(hour, offset_ms=9_000)["client_timestamp"],
        "client_event": "b",
    }
    put_raw(s3, hour, [late], arrival="01-00")  # arrives first
    put_raw(s3, hour, [early], arrival="02-00")  # arrives later, but happened earlier
    result = run(s3, hour, now)
    rows = read_table(s3, result.data_keys[0]).to_pylist()
    assert [r["client_event"] for r in rows] == ["a"]
    assert (result.valid, result.duplicates_removed, result.written_rows) == (2, 1, 1)
    assert result.duplicates_conflicting == 1


def test_dedup_ties_broken_by_arrival_order(s3, hour, now):
    eid = "22222222-2222-4222-8222-222222222222"
    first = event(hour, offset_ms=5_000, event_id=eid, client_event="first")
    second = {**first, "client_event": "second"}
    third = {**first, "client_event": "third"}
    # Uploaded in reverse arrival order: the key (Firehose arrival time) decides, not upload or listing order.
    put_raw(s3, hour, [third], arrival="09-00")
    put_raw(s3, hour, [first, second], arrival="03-00")
    result = run(s3, hour, now)
    rows = read_table(s3, result.data_keys[0]).to_pylist()
    assert [r["client_event"] for r in rows] == ["first"]
    assert result.duplicates_removed == 2


def test_identical_duplicates_are_not_conflicting(s3, hour, now):
    e = event(hour, offset_ms=1)
    put_raw(s3, hour, [e, e, e])
    result = run(s3, hour, now)
    assert (result.duplicates_removed, result.duplicates_conflicting, result.written_rows) == (2, 0, 1)


def test_output_is_sorted_typed_and_complete(s3, hour, now, tmp_path):
    rng = random.Random(7)
    events = [
        event(
            hour,
            offset_ms=rng.randrange(3_600_000),
            user_id=rng.choice([1, 7, 42, 2_147_483_647]),
            device_id=rng.choice(["computer", "mobile", "tablet"]),
            client_event=rng.choice(["login", "view_cart", "checkout"]),
            countrycode=rng.choice(["DE", "IE", "CZ"]),
            seed=str(i),
        )
        for i in range(300)
    ]
    rng.shuffle(events)
    for n, chunk in enumerate([events[:100], events[100:250], events[250:]]):
        put_raw(s3, hour, chunk, arrival=f"{n:02d}-00", suffix=str(n))
    result = run(s3, hour, now, chunk_rows=64, row_group_rows=50)  # several spill files and row groups
    table = read_table(s3, result.data_keys[0])
    assert table.schema.equals(EVENTS_SCHEMA)
    assert table.schema.field("client_timestamp").type == pa.timestamp("ms", tz="UTC")
    rows = table.to_pylist()
    keys = [(r["user_id"], r["device_id"], r["client_timestamp"], r["event_id"]) for r in rows]
    assert keys == sorted(keys)
    as_wire = {
        (
            r["event_id"],
            r["user_id"],
            r["device_id"],
            r["client_event"],
            r["client_timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            r["countrycode"],
        )
        for r in rows
    }
    assert as_wire == {tuple(e.values()) for e in events}
    assert result.written_rows == 300 and result.quarantined == 0
    body = s3.get_object(Bucket=BUCKET, Key=result.data_keys[0])["Body"].read()
    metadata = pq.ParquetFile(io.BytesIO(body)).metadata
    assert metadata.num_row_groups == 6
    # times as deltas (small within a key), with the statistics readers prune row groups by
    times = metadata.row_group(0).column(EVENTS_SCHEMA.names.index("client_timestamp"))
    assert "DELTA_BINARY_PACKED" in times.encodings and times.statistics.has_min_max
    # DuckDB (the reconciliation's reader) reads the same times
    (tmp_path / "data.parquet").write_bytes(body)
    with duckdb.connect() as con:
        read_back = con.execute(
            f"SELECT epoch_ms(client_timestamp) FROM '{tmp_path / 'data.parquet'}'"
        ).fetchall()
    assert [ms for (ms,) in read_back] == [round(r["client_timestamp"].timestamp() * 1000) for r in rows]


def test_quarantine_lines_and_counts(s3, hour, now):
    good = event(hour, offset_ms=10)
    bad_country = {**event(hour, offset_ms=20), "countrycode": "XX"}
    other_hour = event(hour + timedelta(hours=1), offset_ms=0)
    key = put_raw(s3, hour, [good, bad_country, b'{"event_id": "\xff"}', other_hour, b"[1]"])
    result = run(s3, hour, now)
    assert result.quarantined_by_reason == {
        "invalid_countrycode": 1,
        "invalid_utf8": 1,
        "not_an_object": 1,
        "timestamp_outside_partition": 1,
    }
    assert (result.lines_read, result.valid, result.quarantined, result.written_rows) == (5, 1, 4, 1)
    quarantine = read_quarantine(s3, result.quarantine_keys[0])
    assert [q["line"] for q in quarantine] == [2, 3, 4, 5]
    assert all(q["source_key"] == key for q in quarantine)
    by_reason = {q["reason"]: q for q in quarantine}
    assert json.loads(by_reason["invalid_countrycode"]["raw"]) == bad_country
    assert "'XX'" in by_reason["invalid_countrycode"]["detail"]
    utf8 = by_reason["invalid_utf8"]
    assert utf8["raw_encoding"] == "base64"
    assert base64.b64decode(utf8["raw"]) == b'{"event_id": "\xff"}'
    assert by_reason["not_an_object"] == {
        "reason": "not_an_object",
        "detail": by_reason["not_an_object"]["detail"],
        "source_key": key,
        "line": 5,
        "raw": "[1]",
        "raw_encoding": "utf-8",
    }


def test_last_line_without_newline_and_blank_lines_are_counted(s3, hour, now):
    a, b = event(hour, offset_ms=1), event(hour, offset_ms=2)
    body = line(a) + b"\n\n" + line(b)  # a blank line in the middle, no trailing newline
    key = layout.raw_hour_prefix(SETTINGS, hour) + "manual.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body))
    result = run(s3, hour, now)
    assert (result.lines_read, result.written_rows, result.quarantined_by_reason) == (
        3,
        2,
        {"invalid_json": 1},
    )


def test_firehose_error_records_of_the_arrival_hour_are_quarantined(s3, hour, now):
    put_raw(s3, hour, [event(hour, offset_ms=1)])
    valid_elsewhere = line(event(hour - timedelta(hours=3), offset_ms=5))
    key = put_errors(s3, hour, [b"not json", b'{"client_timestamp": 17}', valid_elsewhere, b"\xff\xfe"])
    put_errors(s3, hour + timedelta(hours=1), [b"next hour"])  # arrival hour H+1: not this run's
    put_errors(s3, hour, [b"[]"], error_type="processing-failed")
    # A line that is not an error record at all.
    broken_key = layout.error_hour_suffix(hour)
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{SETTINGS.raw_error_prefix}partitioning-failed/{broken_key}zz-broken.gz",
        Body=gzip.compress(b'{"errorCode": "X"}\n'),
    )
    result = run(s3, hour, now)
    assert result.error_objects == 3
    assert result.error_records_read == 6
    assert result.quarantined_by_reason == {FIREHOSE_PARTITIONING_FAILED: 6}
    assert result.firehose_errors_by_cause == {
        "invalid_json": 1,
        "invalid_utf8": 1,
        "missing_field": 1,
        "not_an_object": 1,
        "unreadable_error_record": 1,
        "valid": 1,
    }
    assert result.written_rows == 1
    records = read_quarantine(s3, result.quarantine_keys[0])
    from_key = [r for r in records if r["source_key"] == key]
    assert [r["raw"] for r in from_key[:3]] == [
        "not json",
        '{"client_timestamp": 17}',
        valid_elsewhere.decode(),
    ]
    assert from_key[0]["error_code"] == "DynamicPartitioning.MetadataExtractionFailed"
    assert "not valid JSON" in from_key[0]["detail"]
    assert from_key[3]["raw_encoding"] == "base64" and base64.b64decode(from_key[3]["raw"]) == b"\xff\xfe"
    manifest = read_manifest(s3, BUCKET, hour, settings=SETTINGS)
    assert len(manifest["inputs"]["error_objects"]) == 3


def test_manifest_contents(s3, hour, now):
    k1 = put_raw(s3, hour, [event(hour, offset_ms=1), event(hour, offset_ms=1)], arrival="01-00")
    k2 = put_raw(s3, hour, [event(hour, offset_ms=2), b"{"], arrival="02-00")
    result = run(s3, hour, now)
    manifest = read_manifest(s3, BUCKET, hour, settings=SETTINGS)
    listed = {o["Key"]: o for o in layout.list_objects(s3, BUCKET, "")}
    assert [o["key"] for o in manifest["inputs"]["raw_objects"]] == [k1, k2]
    for obj in manifest["inputs"]["raw_objects"]:
        assert obj["etag"] == listed[obj["key"]]["ETag"] and obj["size"] == listed[obj["key"]]["Size"]
    assert manifest["counts"] == {
        "raw_objects": 2,
        "error_objects": 0,
        "input_bytes": listed[k1]["Size"] + listed[k2]["Size"],
        "uncompressed_bytes": sum(
            len(gzip.decompress(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read())) for k in (k1, k2)
        ),
        "lines_read": 4,
        "error_records_read": 0,
        "valid": 3,
        "duplicates_removed": 1,
        "duplicates_conflicting": 0,
        "quarantined": 1,
        "quarantined_by_reason": {"invalid_json": 1},
        "firehose_errors_by_cause": {},
        "written_rows": 2,
    }
    assert result.uncompressed_bytes == manifest["counts"]["uncompressed_bytes"]
    for out in manifest["outputs"]["data_files"] + manifest["outputs"]["quarantine_files"]:
        assert listed[out["key"]]["Size"] == out["size"]
    assert manifest["outputs"]["data_files"][0]["rows"] == 2
    assert manifest["outputs"]["quarantine_files"][0]["records"] == 1
    assert manifest["code_version"] == "test-1"
    assert manifest["hour"] == "2026-11-27T10:00:00Z"
    assert (manifest["event_date"], manifest["event_hour"]) == ("2026-11-27", "10")
    assert manifest["created_at"].endswith("Z") and manifest["run_id"] == result.run_id
    assert manifest["content_checksum"] == result.content_checksum
    assert manifest["content_checksum"] == content_checksum_of_table(read_table(s3, result.data_keys[0]))
    assert result.manifest_key == layout.manifest_key(SETTINGS, hour)
    json.dumps(result.to_dict())


class ShuffledListing:
    """An S3 client whose listings come back shuffled, as a differently ordered store might return them."""

    def __init__(self, client, seed: int) -> None:
        self._client, self._rng = client, random.Random(seed)

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_paginator(self, name):
        paginator = self._client.get_paginator(name)
        rng = self._rng

        class Shuffled:
            def paginate(self, **kwargs):
                pages = list(paginator.paginate(**kwargs))
                contents = [c for p in pages for c in p.get("Contents", [])]
                prefixes = [c for p in pages for c in p.get("CommonPrefixes", [])]
                rng.shuffle(contents)
                rng.shuffle(prefixes)
                return [{"Contents": contents, "CommonPrefixes": prefixes}]

        return Shuffled()


def test_reruns_are_identical_and_independent_of_listing_order(s3, hour, now):
    rng = random.Random(3)
    for n in range(5):
        records = [
            event(hour, offset_ms=rng.randrange(3_600_000), user_id=rng.randrange(1, 20)) for _ in range(40)
        ]
        records += records[:5]  # duplicates across and within objects
        records.append({**records[0], "client_event": "conflict"})
        records.append(b"garbage")
        put_raw(s3, hour, records, arrival=f"{n:02d}-30", suffix=str(n))
    put_errors(s3, hour, [b"oops"])
    first = run(s3, hour, now)
    data1 = s3.get_object(Bucket=BUCKET, Key=first.data_keys[0])["Body"].read()
    quarantine1 = s3.get_object(Bucket=BUCKET, Key=first.quarantine_keys[0])["Body"].read()
    manifest1 = read_manifest(s3, BUCKET, hour, settings=SETTINGS)
    second = run(ShuffledListing(s3, seed=1), hour, now)
    third = run(ShuffledListing(s3, seed=2), hour, now, chunk_rows=7)
    for again in (second, third):
        assert again.content_checksum == first.content_checksum
        assert again.run_id != first.run_id
        assert s3.get_object(Bucket=BUCKET, Key=again.data_keys[0])["Body"].read() == data1
        assert s3.get_object(Bucket=BUCKET, Key=again.quarantine_keys[0])["Body"].read() == quarantine1
    manifest3 = read_manifest(s3, BUCKET, hour, settings=SETTINGS)
    for part in ("inputs", "counts", "outputs", "content_checksum", "quarantine_checksum"):
        assert manifest3[part] == manifest1[part]


def test_publish_leaves_no_staging_and_removes_stale_outputs(s3, hour, now):
    stale_data = layout.compacted_hour_prefix(SETTINGS, hour) + "part-00001.parquet"
    stale_quarantine = layout.quarantine_hour_prefix(SETTINGS, hour) + "quarantine-00000.jsonl.gz"
    s3.put_object(Bucket=BUCKET, Key=stale_data, Body=b"old")
    s3.put_object(Bucket=BUCKET, Key=stale_quarantine, Body=b"old")
    neighbour = layout.compacted_hour_prefix(SETTINGS, hour + timedelta(hours=1)) + "part-00000.parquet"
    s3.put_object(Bucket=BUCKET, Key=neighbour, Body=b"other hour")
    put_raw(s3, hour, [event(hour, offset_ms=1)])
    result = run(s3, hour, now)
    keys = all_keys(s3)
    assert not [k for k in keys if k.startswith(layout.staging_root(SETTINGS))]
    assert stale_data not in keys
    assert stale_quarantine not in keys  # this run quarantined nothing, so the old file must go
    assert neighbour in keys
    assert result.quarantine_keys == []
    assert hour_is_compacted(s3, BUCKET, hour, settings=SETTINGS)


def test_rerun_after_a_late_object_includes_it(s3, hour, now):
    put_raw(s3, hour, [event(hour, offset_ms=1)], arrival="01-00")
    first = run(s3, hour, now)
    assert find_late_objects(s3, BUCKET, hour, settings=SETTINGS) == []
    late_key = put_raw(s3, hour, [event(hour, offset_ms=2), event(hour, offset_ms=3)], arrival="50-00")
    late = find_late_objects(s3, BUCKET, hour, settings=SETTINGS)
    assert [(o["kind"], o["key"], o["change"]) for o in late] == [("raw", late_key, "new")]
    assert late[0]["size"] > 0 and late[0]["etag"]
    second = run(s3, hour, now)
    assert (first.written_rows, second.written_rows) == (1, 3)
    assert second.content_checksum != first.content_checksum
    assert find_late_objects(s3, BUCKET, hour, settings=SETTINGS) == []


def test_find_late_objects_reports_changed_and_error_objects(s3, hour, now):
    key = put_raw(s3, hour, [event(hour, offset_ms=1)])
    unrelated = put_raw(s3, hour + timedelta(hours=1), [event(hour + timedelta(hours=1))])
    before = find_late_objects(s3, BUCKET, hour, settings=SETTINGS)
    assert [(o["key"], o["change"]) for o in before] == [(key, "new")]  # no manifest yet: everything is new
    assert unrelated not in {o["key"] for o in before}
    run(s3, hour, now)
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(line(event(hour, offset_ms=9)) + b"\n"))
    error_key = put_errors(s3, hour, [b"x"])
    late = find_late_objects(s3, BUCKET, hour, settings=SETTINGS)
    assert sorted((o["kind"], o["key"], o["change"]) for o in late) == [
        ("error", error_key, "new"),
        ("raw", key, "changed"),
    ]


def test_empty_hour_writes_an_empty_typed_file_and_zero_manifest(s3, hour, now):
    result = run(s3, hour, now)
    table = read_table(s3, result.data_keys[0])
    assert table.num_rows == 0 and table.schema.equals(EVENTS_SCHEMA)
    manifest = read_manifest(s3, BUCKET, hour, settings=SETTINGS)
    counts = manifest["counts"]
    assert counts["lines_read"] == counts["valid"] == counts["written_rows"] == counts["quarantined"] == 0
    assert manifest["inputs"] == {"raw_objects": [], "error_objects": []}
    assert (
        manifest["content_checksum"]
        == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert result.quarantine_keys == []
    assert hour_is_compacted(s3, BUCKET, hour, settings=SETTINGS)


def test_hour_is_compacted_needs_manifest_and_outputs(s3, hour, now):
    assert not hour_is_compacted(s3, BUCKET, hour, settings=SETTINGS)
    assert read_manifest(s3, BUCKET, hour, settings=SETTINGS) is None
    put_raw(s3, hour, [event(hour, offset_ms=1)])
    result = run(s3, hour, now)
    assert hour_is_compacted(s3, BUCKET, hour, settings=SETTINGS)
    s3.delete_object(Bucket=BUCKET, Key=result.data_keys[0])
    assert not hour_is_compacted(s3, BUCKET, hour, settings=SETTINGS)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"plain text, not gzip\n", "not a complete GZIP stream"),
        (gzip.compress(b'{"a": 1}\n' * 1000)[:-20], "not a complete GZIP stream"),
    ],
    ids=["not-gzip", "truncated-gzip"],
)
def test_unreadable_object_fails_loudly_and_publishes_nothing(s3, hour, now, body, problem):
    put_raw(s3, hour, [event(hour, offset_ms=1)], arrival="00-00")
    bad_key = layout.raw_hour_prefix(SETTINGS, hour) + "clickstream-raw-delivery-1-2026-11-27-10-30-00-bad.gz"
    s3.put_object(Bucket=BUCKET, Key=bad_key, Body=body)
    with pytest.raises(RawObjectUnreadable, match=problem) as info:
        run(s3, hour, now)
    assert info.value.key == bad_key and bad_key in str(info.value)
    assert all_keys(s3) == sorted(
        [
            bad_key,
            layout.raw_hour_prefix(SETTINGS, hour) + "clickstream-raw-delivery-1-2026-11-27-10-00-00-a.gz",
        ]
    )


def test_object_replaced_between_listing_and_read_fails(s3, hour, now, monkeypatch):
    key = put_raw(s3, hour, [event(hour, offset_ms=1)])
    real = layout.list_raw_objects

    def listing_then_overwrite(*args, **kwargs):
        objs = real(*args, **kwargs)
        s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(b"changed\n"))
        return objs

    monkeypatch.setattr(layout, "list_raw_objects", listing_then_overwrite)
    with pytest.raises(RawObjectUnreadable, match="If-Match"):
        run(s3, hour, now)


def test_count_mismatch_raises_and_publishes_nothing(s3, hour, now, monkeypatch):
    put_raw(s3, hour, [event(hour, offset_ms=1), event(hour, offset_ms=2)])
    real = dedup_sort.dedup_sort_write

    def losing_a_row(*args, **kwargs):
        stats = real(*args, **kwargs)
        return dataclasses.replace(stats, written=stats.written - 1)

    monkeypatch.setattr(dedup_sort, "dedup_sort_write", losing_a_row)
    with pytest.raises(CountMismatch, match=r"written=1 != valid=2 - duplicates_removed=0"):
        run(s3, hour, now)
    assert not [k for k in all_keys(s3) if not k.startswith(SETTINGS.raw_prefix)]


def test_failed_publish_cleans_staging(s3, hour, now, monkeypatch):
    put_raw(s3, hour, [event(hour, offset_ms=1), b"bad"])

    def failing_publish(*args, **kwargs):
        raise CompactionError("simulated copy failure")

    monkeypatch.setattr(publish, "publish_staged", failing_publish)
    with pytest.raises(CompactionError, match="simulated"):
        run(s3, hour, now)
    assert not [k for k in all_keys(s3) if not k.startswith(SETTINGS.raw_prefix)]


def test_argument_validation(s3, hour, now):
    with pytest.raises(ValueError, match="hour_start must be the start of an hour"):
        run(s3, hour + timedelta(seconds=1), now)
    with pytest.raises(ValueError, match="hour_start must be timezone-aware"):
        run(s3, hour.replace(tzinfo=None), now)
    with pytest.raises(ValueError, match="now must be a timezone-aware"):
        run(s3, hour, now.replace(tzinfo=None))
    with pytest.raises(ValueError, match="chunk_rows must be a positive integer, got 0"):
        run(s3, hour, now, chunk_rows=0)
    with pytest.raises(ValueError, match="code_version"):
        compact_hour(s3, BUCKET, hour, settings=SETTINGS, now=now, code_version="")


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 1000])
def test_streaming_dedup_across_batch_boundaries(batch_size):
    rng = random.Random(batch_size)
    rows = []
    for i in range(200):
        eid = f"{rng.randrange(60):08x}-0000-4000-8000-000000000000"
        payload = rng.choice(
            [(1, "mobile", "login", 5, "DE"), (1, "mobile", "login", 5, "DE"), (2, "tablet", "x", 6, "IE")]
        )
        rows.append((eid, *payload, rng.randrange(3), i))
    rows.sort(key=lambda r: (r[0], r[4], r[6], r[7]))  # the pass-1 order: event_id, ts_ms, src, line
    names = ["event_id", "user_id", "device_id", "client_event", "ts_ms", "countrycode", "src", "line"]
    table = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows]).drop_columns(
        ["src", "line"]
    )
    dedup = dedup_sort.FirstPerEventId()
    kept = [dedup(b) for b in table.to_batches(max_chunksize=batch_size)]
    kept_rows = pa.Table.from_batches(kept, schema=table.schema).to_pylist()
    expected_first = {}
    payloads = {}
    for r in rows:
        expected_first.setdefault(r[0], r[:6])
        payloads.setdefault(r[0], set()).add(r[1:6])
    assert [tuple(r.values()) for r in kept_rows] == list(expected_first.values())
    assert dedup.rows == 200 and dedup.kept == len(expected_first)
    assert dedup.conflicting == sum(1 for p in payloads.values() if len(p) > 1) > 0

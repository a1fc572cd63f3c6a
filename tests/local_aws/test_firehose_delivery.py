"""Firehose delivery to S3 from Kinesis and DirectPut: keys, gzip, partitions, errors, buffering, crashes."""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
from datetime import UTC, datetime

import pytest

from include.config import PARTITION_QUERY, Settings
from tests.local_aws.support import companion_get, firehose_stats, list_keys, wait_active, wait_for

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/firehose"
BUCKET = "delivery-lake"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def suffix(name: str, version: int) -> str:
    """Regex of Firehose's object name: <stream>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid>."""
    return re.escape(f"{name}-{version}-") + r"\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-" + UUID


@pytest.fixture(scope="module")
def s3(client):
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    return s3


def make_stream(client, name: str, shards: int) -> str:
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def dp_destination(interval: int = 2, **overrides) -> dict:
    settings = Settings()
    dest = {
        "RoleARN": ROLE,
        "BucketARN": f"arn:aws:s3:::{BUCKET}",
        "Prefix": settings.firehose_prefix,
        "ErrorOutputPrefix": settings.firehose_error_prefix,
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": interval},
        "CompressionFormat": "GZIP",
        "DynamicPartitioningConfiguration": {"Enabled": True},
        "ProcessingConfiguration": {
            "Enabled": True,
            "Processors": [
                {
                    "Type": "MetadataExtraction",
                    "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": PARTITION_QUERY},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                    ],
                },
                {"Type": "AppendDelimiterToRecord"},
            ],
        },
    }
    dest.update(overrides)
    return dest


def create_from_kinesis(client, name: str, stream_arn: str, destination: dict) -> None:
    firehose = client("firehose")
    firehose.create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=destination,
    )
    wait_active(firehose, name)


def event(i: int, hour: int, day: int = 27) -> bytes:
    return json.dumps(
        {
            "event_id": f"e{i:06d}",
            "user_id": i % 97 + 1,
            "device_id": "mobile",
            "client_event": "view_cart",
            "client_timestamp": f"2026-11-{day:02d}T{hour:02d}:{i % 60:02d}:00.000Z",
            "countrycode": "BE",
        }
    ).encode()


def put_all(client, stream: str, payloads: list[bytes]) -> None:
    kinesis = client("kinesis")
    for start in range(0, len(payloads), 500):
        batch = payloads[start : start + 500]
        result = kinesis.put_records(
            StreamName=stream,
            Records=[{"Data": d, "PartitionKey": str(start + i)} for i, d in enumerate(batch)],
        )
        assert result["FailedRecordCount"] == 0


def read_lines(s3, key: str, compressed: bool = True) -> list[bytes]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    if compressed:
        body = gzip.decompress(body)
    assert body.endswith(b"\n"), f"{key} is not newline-terminated"
    return body.split(b"\n")[:-1]


def test_dynamic_partitioning_from_two_shards(client, s3, endpoint):
    settings = Settings()
    arn = make_stream(client, "dp-events", 2)
    create_from_kinesis(client, "dp-delivery", arn, dp_destination())
    good = [event(i, hour=i % 3 + 9, day=26 + i % 2) for i in range(3000)]
    bad = [
        b"not json at all",
        json.dumps({"event_id": "no-ts"}).encode(),
        json.dumps({"event_id": "num-ts", "client_timestamp": 1700000000}).encode(),
        json.dumps({"event_id": "bad-ts", "client_timestamp": "yesterday"}).encode(),
        b"[1, 2, 3]",
        "\u00e9t\u00e9".encode("latin-1"),  # not UTF-8
    ]
    payloads = good[:1500] + bad + good[1500:]
    put_all(client, "dp-events", payloads)

    stats = wait_for(
        lambda: (
            (s := firehose_stats(endpoint, "dp-delivery"))["records_delivered"] + s["records_failed"]
            >= len(payloads)
            and s
        ),
        30,
        "all records to be delivered",
    )
    assert stats["records_delivered"] == len(good)
    assert stats["records_failed"] == len(bad)
    assert stats["buffered_records"] == 0

    data_re = re.compile(
        re.escape(settings.raw_prefix)
        + r"event_date=(\d{4}-\d{2}-\d{2})/event_hour=(\d{2})/"
        + suffix("dp-delivery", 1)
        + r"\.gz$"
    )
    seen: dict[str, int] = {}
    partitions = set()
    for key in list_keys(s3, BUCKET, settings.raw_prefix):
        match = data_re.match(key)
        assert match, f"unexpected key {key}"
        partitions.add(match.groups())
        for line in read_lines(s3, key):
            record = json.loads(line)
            assert record["client_timestamp"][:10] == match.group(1)
            assert record["client_timestamp"][11:13] == match.group(2)
            seen[record["event_id"]] = seen.get(record["event_id"], 0) + 1
    assert partitions == {(f"2026-11-{d}", f"{h:02d}") for d in (26, 27) for h in (9, 10, 11)}
    assert seen == {json.loads(g)["event_id"]: 1 for g in good}  # all there, none twice

    now = datetime.now(UTC)
    error_re = re.compile(
        re.escape(settings.raw_error_prefix)
        + r"partitioning-failed/(\d{4})/(\d{2})/(\d{2})/(\d{2})/"
        + suffix("dp-delivery", 1)
        + r"\.gz$"
    )
    raw_bad = []
    for key in list_keys(s3, BUCKET, settings.raw_error_prefix):
        match = error_re.match(key)
        assert match, f"unexpected error key {key}"
        assert match.group(1) == str(now.year)
        for line in read_lines(s3, key):
            doc = json.loads(line)
            assert doc["errorCode"] == "DynamicPartitioning.MetadataExtractionFailed"
            assert doc["attemptsMade"] == 1
            assert doc["errorMessage"]
            assert abs(doc["arrivalTimestamp"] / 1000 - now.timestamp()) < 120
            assert doc["attemptEndingTimestamp"] >= doc["arrivalTimestamp"]
            assert doc["sequenceNumber"]
            raw_bad.append(base64.b64decode(doc["rawData"]))
    assert sorted(raw_bad) == sorted(bad)
    messages = {
        base64.b64decode(json.loads(line)["rawData"]): json.loads(line)["errorMessage"]
        for key in list_keys(s3, BUCKET, settings.raw_error_prefix)
        for line in read_lines(s3, key)
    }
    assert messages[b"not json at all"].startswith("Non JSON record provided")
    assert "client_timestamp is missing or not ISO-8601" in messages[bad[1]]


def test_buffering_by_size(client, s3, endpoint):
    """SizeInMBs=1 with a 900 s interval: objects of ~1 MiB appear without waiting for the interval."""
    arn = make_stream(client, "size-events", 1)
    create_from_kinesis(
        client,
        "size-delivery",
        arn,
        {
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
            "Prefix": "by-size/",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 900},
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        },
    )
    record_size = 1000
    payloads = [f"{i:07d}".encode() + b"x" * (record_size - 8) for i in range(2600)]  # ~2.5 MiB with newlines
    put_all(client, "size-events", payloads)
    wait_for(
        lambda: firehose_stats(endpoint, "size-delivery")["objects_written"] >= 2, 20, "two size flushes"
    )
    time.sleep(0.5)
    stats = firehose_stats(endpoint, "size-delivery")
    assert stats["objects_written"] == 2
    assert stats["buffered_records"] == len(payloads) - stats["records_delivered"] > 0

    key_re = re.compile(r"by-size/\d{4}/\d{2}/\d{2}/\d{2}/" + suffix("size-delivery", 1) + "$")
    keys = list_keys(s3, BUCKET, "by-size/")
    assert len(keys) == 2 and all(key_re.match(k) for k in keys), keys
    for key in keys:
        size = s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        assert 1024 * 1024 <= size < 1024 * 1024 + record_size + 1

    # The interval is 900 s: the rest only arrives when flushed (the debug route forces it).
    status, stats = companion_get(endpoint, "/_companion/firehose/size-delivery/flush", method="POST")
    assert status == 200 and stats["buffered_records"] == 0
    lines = [
        line for key in list_keys(s3, BUCKET, "by-size/") for line in read_lines(s3, key, compressed=False)
    ]
    assert sorted(lines) == payloads


def test_buffering_by_interval(client, s3, endpoint):
    arn = make_stream(client, "interval-events", 1)
    create_from_kinesis(client, "interval-delivery", arn, dp_destination(interval=3))
    started = time.monotonic()
    put_all(client, "interval-events", [event(i, hour=5) for i in range(20)])
    wait_for(lambda: firehose_stats(endpoint, "interval-delivery")["records_read"] == 20, 5, "records read")
    assert firehose_stats(endpoint, "interval-delivery")["objects_written"] == 0
    wait_for(
        lambda: firehose_stats(endpoint, "interval-delivery")["objects_written"] == 1, 10, "interval flush"
    )
    elapsed = time.monotonic() - started
    assert 2.5 <= elapsed < 8, elapsed
    keys = list_keys(s3, BUCKET, "raw/events/event_date=2026-11-27/event_hour=05/")
    assert len(keys) == 1 and len(read_lines(s3, keys[0])) == 20


def test_kill_9_mid_delivery_loses_nothing(client, s3, endpoint):
    """Records read but not yet written when the companion dies are redelivered after restart."""
    arn = make_stream(client, "crash-events", 2)
    create_from_kinesis(
        client,
        "crash-delivery",
        arn,
        dp_destination(interval=2, Prefix="crash/!{partitionKeyFromQuery:event_date}/"),
    )
    first = [event(i, hour=1) for i in range(1000)]
    second = [event(i, hour=2) for i in range(1000, 2500)]
    third = [event(i, hour=3) for i in range(2500, 3000)]

    put_all(client, "crash-events", first)
    wait_for(
        lambda: firehose_stats(endpoint, "crash-delivery")["records_delivered"] == 1000, 20, "first batch"
    )
    put_all(client, "crash-events", second)
    # Kill while the second batch sits in the buffer: read, not yet written (the interval is 2 s).
    wait_for(
        lambda: firehose_stats(endpoint, "crash-delivery")["records_read"] >= 2500, 10, "second batch read"
    )
    assert firehose_stats(endpoint, "crash-delivery")["records_delivered"] == 1000
    endpoint.kill_companion()
    endpoint.restart_companion()
    put_all(client, "crash-events", third)

    wait_for(
        lambda: firehose_stats(endpoint, "crash-delivery")["records_delivered"] >= 2000,
        20,
        "redelivery after restart",
    )
    counts: dict[str, int] = {}
    for key in list_keys(s3, BUCKET, "crash/"):
        for line in read_lines(s3, key):
            event_id = json.loads(line)["event_id"]
            counts[event_id] = counts.get(event_id, 0) + 1
    expected = {json.loads(p)["event_id"] for p in first + second + third}
    assert set(counts) == expected  # nothing lost
    # The first batch was checkpointed before the crash, so it is not delivered again.
    assert all(counts[json.loads(p)["event_id"]] == 1 for p in first)


def test_sigterm_flushes_the_buffer(client, s3, endpoint):
    arn = make_stream(client, "term-events", 1)
    create_from_kinesis(
        client,
        "term-delivery",
        arn,
        dp_destination(interval=900, Prefix="term/!{partitionKeyFromQuery:event_hour}/"),
    )
    put_all(client, "term-events", [event(i, hour=7) for i in range(50)])
    wait_for(lambda: firehose_stats(endpoint, "term-delivery")["records_read"] == 50, 10, "records read")
    assert list_keys(s3, BUCKET, "term/") == []
    endpoint.restart_companion()  # SIGTERM, then a fresh companion
    keys = list_keys(s3, BUCKET, "term/07/")
    assert len(keys) == 1 and len(read_lines(s3, keys[0])) == 50
    stats = firehose_stats(endpoint, "term-delivery")
    assert stats["checkpoint"]["shards"]["shardId-000000000000"]["sequence"]
    time.sleep(1)
    assert firehose_stats(endpoint, "term-delivery")["records_read"] == 0  # resumed after the checkpoint


def test_direct_put_survives_kill_9(client, s3, endpoint):
    firehose = client("firehose")
    firehose.create_delivery_stream(
        DeliveryStreamName="direct-delivery",
        DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={
            "RoleARN": ROLE,
            "BucketARN": f"arn:aws:s3:::{BUCKET}",
            "Prefix": "direct/!{timestamp:yyyy-MM-dd}/",
            "ErrorOutputPrefix": "direct-errors/!{firehose:error-output-type}/",
            "BufferingHints": {"SizeInMBs": 5, "IntervalInSeconds": 900},
            "CompressionFormat": "GZIP",
            "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "AppendDelimiterToRecord"}]},
        },
    )
    wait_active(firehose, "direct-delivery")
    payloads = [f"direct-{i}".encode() for i in range(1200)]
    for start in range(0, len(payloads), 400):
        result = firehose.put_record_batch(
            DeliveryStreamName="direct-delivery", Records=[{"Data": d} for d in payloads[start : start + 400]]
        )
        assert result["FailedPutCount"] == 0 and len(result["RequestResponses"]) == 400
    assert firehose.put_record(DeliveryStreamName="direct-delivery", Record={"Data": b"direct-last"})[
        "RecordId"
    ]
    payloads.append(b"direct-last")

    endpoint.kill_companion()  # acknowledged records are in the spool, not yet in S3
    endpoint.restart_companion()
    status, _ = companion_get(endpoint, "/_companion/firehose/direct-delivery/flush", method="POST")
    assert status == 200
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    key_re = re.compile(rf"direct/{today}/" + suffix("direct-delivery", 1) + r"\.gz$")
    keys = list_keys(s3, BUCKET, "direct/")
    assert keys and all(key_re.match(k) for k in keys), keys
    lines = [line for key in keys for line in read_lines(s3, key)]
    assert sorted(lines) == sorted(payloads)


def test_resharding_keeps_delivering(client, s3, endpoint):
    """After a split the parent drains and closes, then its children are read (moto moves old records into
    the children, so those arrive twice: at least once, never lost)."""
    arn = make_stream(client, "reshard-events", 1)
    create_from_kinesis(
        client,
        "reshard-delivery",
        arn,
        dp_destination(interval=1, Prefix="reshard/!{partitionKeyFromQuery:event_hour}/"),
    )
    before = [event(i, hour=8) for i in range(300)]
    put_all(client, "reshard-events", before)
    wait_for(
        lambda: firehose_stats(endpoint, "reshard-delivery")["records_delivered"] == 300, 15, "first records"
    )
    client("kinesis").update_shard_count(
        StreamName="reshard-events", TargetShardCount=2, ScalingType="UNIFORM_SCALING"
    )
    after = [event(i, hour=8) for i in range(300, 700)]
    put_all(client, "reshard-events", after)

    def all_there():
        ids = {
            json.loads(line)["event_id"]
            for key in list_keys(s3, BUCKET, "reshard/")
            for line in read_lines(s3, key)
        }
        return ids == {json.loads(p)["event_id"] for p in before + after}

    wait_for(all_there, 30, "records put after the split", interval=0.5)
    stats = firehose_stats(endpoint, "reshard-delivery")
    shards = stats["checkpoint"]["shards"]
    assert shards["shardId-000000000000"]["finished"] is True
    assert {"shardId-000000000001", "shardId-000000000002"} <= set(shards)

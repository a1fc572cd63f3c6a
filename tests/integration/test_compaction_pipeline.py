"""End to end: producer (with duplicates and malformed records) → Firehose → compaction DAG → Parquet.

The compacted rows must equal the producer's valid ground truth for the hour exactly (no loss, no
duplicates), quarantine counts must equal the injected malformed records by reason, a rerun must give the
same checksum, and a raw object that lands after compaction must be detected (alert) and re-compacted.
"""

from __future__ import annotations

import gzip
import io
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from include.config import settings
from include.producer import ProducerParams, generate
from localdev.airflow_env import run_dag, task_result, task_states
from tests.integration.lake import drain, read_lake, wait_for

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
# Producer intervals 05:57 → 06:01: most events in hour 05, some in 06.
INTERVAL_ENDS = [HOUR + timedelta(minutes=58 + i) for i in range(4)]
PARAMS = {
    "users": 3000,
    "events_per_second": 20.0,
    "seed": 11,
    "duplicate_fraction": 0.05,
    "malformed_fraction": 0.05,
}
HOUR_PARTITION = "raw/events/event_date=2026-11-25/event_hour=05/"


def _compact(hour: datetime, **params):
    run = run_dag("clickstream_compaction", logical_date=hour + timedelta(hours=1), conf=params or None)
    assert run.state == "success", task_states(run)
    return run


def _rows(s3, bucket: str) -> list[dict]:
    prefix = "compacted/events/event_date=2026-11-25/event_hour=05/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys]
    return [row for t in tables for row in t.to_pylist()]


@pytest.fixture(scope="module")
def landed(local_endpoint, airflow_db, aws_clients):
    run = run_dag("clickstream_setup")
    assert run.state == "success", task_states(run)
    for end in INTERVAL_ENDS:
        run = run_dag("clickstream_producer", logical_date=end, conf=PARAMS)
        assert run.state == "success", task_states(run)
    truth = [
        generate(ProducerParams.from_dict(PARAMS), end - timedelta(minutes=1), end) for end in INTERVAL_ENDS
    ]
    expected = Counter(rec.data for batch in truth for rec in batch)
    s3, bucket = aws_clients("s3"), settings().bucket

    def delivered():
        lake = read_lake(s3, bucket)
        got = lake.raw_payloads() + lake.error_payloads()
        return lake if all(got[d] >= n for d, n in expected.items()) else None

    lake = wait_for(delivered, timeout=90, interval=2, what="Firehose delivery")
    kind_of = {rec.data: rec.kind for batch in truth for rec in batch}
    hour_lines = [line for key, line in lake.raw_lines if key.startswith(HOUR_PARTITION)]
    return truth, kind_of, hour_lines


@pytest.fixture(scope="module")
def compacted(landed, aws_clients):
    run = _compact(HOUR)
    return task_result(run, "compact"), task_result(run, "register_partition")


def test_rows_equal_the_valid_ground_truth(landed, compacted, aws_clients):
    truth, kind_of, hour_lines = landed
    result, _ = compacted
    expected = {}
    for batch in truth:
        for event in batch.valid_events():
            if event["client_timestamp"].startswith("2026-11-25T05"):
                expected[event["event_id"]] = event
    rows = _rows(aws_clients("s3"), settings().bucket)
    assert len(rows) == len(expected) == result["written_rows"]
    assert {r["event_id"] for r in rows} == set(expected)
    for row in rows[:200]:
        event = expected[row["event_id"]]
        assert row["user_id"] == event["user_id"] and row["device_id"] == event["device_id"]
        assert (
            row["client_timestamp"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
            == event["client_timestamp"]
        )
    keys = [(r["user_id"], r["device_id"], r["client_timestamp"], r["event_id"]) for r in rows]
    assert keys == sorted(keys), "rows must be sorted by (user_id, device_id, client_timestamp)"
    sent_copies = sum(1 for line in hour_lines if kind_of[line] in ("valid", "late", "duplicate"))
    assert result["duplicates_removed"] == sent_copies - len(expected) > 0


def test_quarantine_counts_equal_injected_faults(landed, compacted):
    _, kind_of, hour_lines = landed
    result, _ = compacted
    injected = Counter(
        kind_of[line] for line in hour_lines if kind_of[line] not in ("valid", "late", "duplicate")
    )
    assert injected, "the malformed fraction should put records into the hour's partition"
    assert result["quarantined_by_reason"] == dict(injected)


def test_rerun_gives_the_same_checksum(compacted):
    result, partitions = compacted
    assert set(partitions.values()) <= {"created", "updated", "unchanged"}
    again = task_result(_compact(HOUR), "compact")
    assert again["content_checksum"] == result["content_checksum"]
    assert again["written_rows"] == result["written_rows"]


def test_late_raw_object_is_detected_alerted_and_recompacted(compacted, aws_clients):
    from include.compaction.tasks import handle_late_data

    result, _ = compacted
    s3, sqs, bucket = aws_clients("s3"), aws_clients("sqs"), settings().bucket
    late_events = [
        {
            "event_id": str(uuid.UUID(int=i + 1)),
            "user_id": 99_000 + i,
            "device_id": "tablet",
            "client_event": "checkout",
            "client_timestamp": f"2026-11-25T05:59:5{i}.000Z",
            "countrycode": "BE",
        }
        for i in range(3)
    ]
    body = gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in late_events))
    # Named like a Firehose object that was delivered late (e.g. after a long Firehose outage).
    key = f"{HOUR_PARTITION}{settings().delivery_stream}-1-2026-11-25-07-12-00-{uuid.uuid4()}.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=body)

    queue_url = sqs.get_queue_url(QueueName=settings().alert_queue)["QueueUrl"]
    drain(sqs, queue_url)
    alerted = handle_late_data(HOUR + timedelta(hours=1), {"on_late_data": "alert", "late_check_hours": 2})
    assert alerted["late_hours"][HOUR.isoformat()] == {"late_objects": 1, "action": "alerted"}
    messages = wait_for(
        lambda: sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages"),
        timeout=20,
        what="the late-data alert in the SQS inbox",
    )
    assert "late raw data" in messages[0]["Body"] or "after it was compacted" in messages[0]["Body"]

    run = _compact(HOUR + timedelta(hours=1), on_late_data="recompact", late_check_hours=2)
    actions = task_result(run, "check_late_data")["late_hours"]
    assert actions[HOUR.isoformat()]["action"] == "recompacted"
    rows = _rows(s3, bucket)
    assert len(rows) == result["written_rows"] + 3
    assert {e["event_id"] for e in late_events} <= {r["event_id"] for r in rows}

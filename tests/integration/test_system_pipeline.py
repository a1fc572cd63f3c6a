"""System test, setup → body → teardown, through the DAGs (see tests/integration/system.py for the shape and for
running it against an AWS sandbox account with ``CLICKSTREAM_SYSTEM_TEST_CONN``; by default it runs against
the session's local endpoint).

* TEST SETUP: ``clickstream_setup`` creates every resource.
* TEST BODY: the producer DAG (with duplicates and malformed records) → Kinesis → Firehose → S3 raw → the
  compaction DAG → Parquet. The compacted rows must equal the producer's valid ground truth for the hour
  exactly (no loss, no duplicates), quarantine counts must equal the injected malformed records by reason, a
  rerun must give the same checksum, and a raw object that lands after compaction must be detected (alert)
  and re-compacted.
* TEST TEARDOWN: ``clickstream_teardown`` runs whatever the body did (the module fixture runs it if the last
  test did not), must delete every resource setup reported, leave nothing listed in the account, and a second
  run must find everything ``absent``. A failed body test fails the session while the teardown still runs,
  which is what the provider's ``all_done`` teardown plus ``watcher`` do inside one DAG.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from include.aws import client
from include.config import settings
from include.producer import ProducerParams, generate
from localdev.airflow_env import run_dag, task_result, task_states
from tests.integration.lake import drain, read_lake, wait_for
from tests.integration.system import (
    sandbox_account,
    sandbox_connection,
    settled_leftovers,
    teardown_conf,
)

pytestmark = pytest.mark.integration

# An hour of three days ago, so that on AWS too it is past (the compaction sensor passes at once) and not in
# the future (compaction would quarantine it as clock skew).
HOUR = (datetime.now(UTC) - timedelta(days=3)).replace(hour=5, minute=0, second=0, microsecond=0)
# Producer intervals 05:57 → 06:01: most events in hour 05, some in 06.
INTERVAL_ENDS = [HOUR + timedelta(minutes=58 + i) for i in range(4)]
PARAMS = {
    "users": 3000,
    "events_per_second": 20.0,
    "seed": 11,
    "duplicate_fraction": 0.05,
    "malformed_fraction": 0.05,
}
PARTITION = f"event_date={HOUR:%Y-%m-%d}/event_hour={HOUR:%H}/"
SETUP_OUTCOMES = {"created", "updated", "unchanged"}


class System:
    """What the setup reported, and whether the teardown test already tore everything down."""

    def __init__(self, setup_summary: dict[str, str]) -> None:
        self.setup_summary = setup_summary
        self.torn_down = False


@pytest.fixture(scope="module")
def system(request, airflow_db):
    """TEST SETUP now, TEST TEARDOWN at the end of the module whatever happened in between (all_done)."""
    with contextlib.ExitStack() as account:
        conn = sandbox_connection()
        if conn is None:
            request.getfixturevalue("local_endpoint")
        else:
            account.enter_context(sandbox_account(conn))
        state = None
        try:
            run = run_dag("clickstream_setup")
            state = System(task_result(run, "summary") or {})
            assert run.state == "success", task_states(run)
            yield state
        finally:
            if state is None or not state.torn_down:
                run_dag("clickstream_teardown", conf=teardown_conf())


def _compact(hour: datetime, **params):
    run = run_dag("clickstream_compaction", logical_date=hour + timedelta(hours=1), conf=params or None)
    assert run.state == "success", task_states(run)
    return run


def _rows(s3, bucket: str) -> list[dict]:
    prefix = f"{settings().compacted_prefix}{PARTITION}"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=k)["Body"].read())) for k in keys]
    return [row for t in tables for row in t.to_pylist()]


@pytest.fixture(scope="module")
def landed(system):
    for end in INTERVAL_ENDS:
        run = run_dag("clickstream_producer", logical_date=end, conf=PARAMS)
        assert run.state == "success", task_states(run)
    truth = [
        generate(ProducerParams.from_dict(PARAMS), end - timedelta(minutes=1), end) for end in INTERVAL_ENDS
    ]
    expected = Counter(rec.data for batch in truth for rec in batch)
    s3, bucket = client("s3"), settings().bucket

    def delivered():
        lake = read_lake(s3, bucket)
        got = lake.raw_payloads() + lake.error_payloads()
        return lake if all(got[d] >= n for d, n in expected.items()) else None

    # Two buffer intervals and a margin: a record can just miss one flush.
    timeout = 2 * settings().firehose_buffer_seconds + 90
    lake = wait_for(delivered, timeout=timeout, interval=2, what="Firehose delivery")
    kind_of = {rec.data: rec.kind for batch in truth for rec in batch}
    hour_prefix = f"{settings().raw_prefix}{PARTITION}"
    hour_lines = [line for key, line in lake.raw_lines if key.startswith(hour_prefix)]
    return truth, kind_of, hour_lines


@pytest.fixture(scope="module")
def compacted(landed):
    run = _compact(HOUR)
    return task_result(run, "compact"), task_result(run, "register_partition")


# --------------------------------------------------------------------------------------------------- setup
def test_setup_reports_every_resource(system):
    cfg = settings()
    assert set(system.setup_summary.values()) <= SETUP_OUTCOMES, system.setup_summary
    assert {
        f"s3://{cfg.bucket}",
        f"s3://{cfg.artifacts_bucket}",
        f"kinesis:{cfg.stream_name}",
        f"firehose:{cfg.delivery_stream}",
        f"sns:{cfg.alert_topic}",
        f"sqs:{cfg.alert_queue}",
        f"glue:{cfg.glue_database}",
        f"glue:{cfg.glue_database}.compacted_events",
        f"kinesisanalyticsv2:{cfg.flink_app}",
    } <= set(system.setup_summary)
    assert any(k.startswith("sns-subscription:sqs:") for k in system.setup_summary)


# --------------------------------------------------------------------------------------------------- body
def test_rows_equal_the_valid_ground_truth(landed, compacted):
    truth, kind_of, hour_lines = landed
    result, _ = compacted
    expected = {}
    for batch in truth:
        for event in batch.valid_events():
            if event["client_timestamp"].startswith(f"{HOUR:%Y-%m-%dT%H}"):
                expected[event["event_id"]] = event
    rows = _rows(client("s3"), settings().bucket)
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


def test_late_raw_object_is_detected_alerted_and_recompacted(compacted):
    from include.compaction.tasks import handle_late_data

    result, _ = compacted
    cfg = settings()
    s3, sqs, bucket = client("s3"), client("sqs"), cfg.bucket
    late_events = [
        {
            "event_id": str(uuid.UUID(int=i + 1)),
            "user_id": 99_000 + i,
            "device_id": "tablet",
            "client_event": "checkout",
            "client_timestamp": f"{HOUR:%Y-%m-%dT%H}:59:5{i}.000Z",
            "countrycode": "BE",
        }
        for i in range(3)
    ]
    body = gzip.compress(b"".join(json.dumps(e).encode() + b"\n" for e in late_events))
    # Named like a Firehose object that was delivered late (e.g. after a long Firehose outage).
    delivered_at = HOUR + timedelta(hours=2, minutes=12)
    key = f"{cfg.raw_prefix}{PARTITION}{cfg.delivery_stream}-1-{delivered_at:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=body)

    queue_url = sqs.get_queue_url(QueueName=cfg.alert_queue)["QueueUrl"]
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


# --------------------------------------------------------------------------------------------------- teardown
def test_teardown_deletes_everything_setup_created_and_a_second_finds_nothing(system):
    first = run_dag("clickstream_teardown", conf=teardown_conf())
    system.torn_down = True
    states = task_states(first)
    assert first.state == "success", states
    assert states["watcher"] == "skipped" and states["check_confirmation"] == "success", states
    deleted = task_result(first, "summary")
    # Every resource setup reported is deleted, under the same key; nothing else of ours was found absent.
    assert set(system.setup_summary) <= set(deleted), set(system.setup_summary) - set(deleted)
    assert {k: v for k, v in deleted.items() if k in system.setup_summary and v != "deleted"} == {}
    assert settled_leftovers() == {}

    second = run_dag("clickstream_teardown", conf=teardown_conf())
    assert second.state == "success", task_states(second)
    again = task_result(second, "summary")
    assert again and set(again.values()) == {"absent"}, again
    assert {k for k in system.setup_summary if not k.startswith("sns-subscription:")} <= set(again)

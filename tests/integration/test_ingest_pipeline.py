"""End to end on the real local endpoint: setup DAG → producer DAG → Kinesis → Firehose (companion) → S3.

Runs the DAGs with ``dag.test()`` against moto + the companion started by the ``local_endpoint`` fixture.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from include.config import settings
from include.producer import KinesisWriter, ProducerParams, generate
from localdev.airflow_env import run_dag, task_result, task_states
from tests.integration.lake import read_lake, wait_for

pytestmark = pytest.mark.integration

# Three producer intervals that cross an hour boundary (09:58 → 10:01).
INTERVAL_ENDS = [datetime(2026, 11, 26, 9, 59, tzinfo=UTC) + timedelta(minutes=i) for i in range(3)]
PARAMS = {
    "users": 2000,
    "events_per_second": 15.0,
    "seed": 7,
    "late_fraction": 0.02,
    "late_delay_seconds": 600,
    "duplicate_fraction": 0.05,
    "malformed_fraction": 0.06,
}


@pytest.fixture(scope="module")
def provisioned(local_endpoint, airflow_db):
    results = []
    for _ in range(2):
        run = run_dag("clickstream_setup")
        assert run.state == "success", task_states(run)
        results.append(task_result(run, "summary"))
    return results


def test_setup_is_idempotent(provisioned):
    first, second = provisioned
    # Other test modules may have run setup first on this session's endpoint, so the first run here may
    # already find everything; the second run must find everything and change nothing.
    assert set(first.values()) <= {"created", "updated", "unchanged"}
    assert {
        "s3://clickstream-lake",
        "kinesis:clickstream-events",
        "firehose:clickstream-raw-delivery",
        "sns:clickstream-alerts",
        "glue:clickstream.compacted_events",
    } <= set(first)
    assert set(second) == set(first)
    assert set(second.values()) == {"unchanged"}, second


@pytest.fixture(scope="module")
def produced(provisioned, aws_clients):
    reports = []
    for end in INTERVAL_ENDS:
        run = run_dag("clickstream_producer", logical_date=end, conf=PARAMS)
        assert run.state == "success", task_states(run)
        reports.append(task_result(run, "produce"))
    truth = [
        generate(ProducerParams.from_dict(PARAMS), end - timedelta(minutes=1), end) for end in INTERVAL_ENDS
    ]
    expected = Counter(rec.data for batch in truth for rec in batch)
    s3 = aws_clients("s3")
    bucket = settings().bucket

    def delivered():
        lake = read_lake(s3, bucket)
        got = lake.raw_payloads() + lake.error_payloads()
        return lake if all(got[data] >= n for data, n in expected.items()) else None

    lake = wait_for(delivered, timeout=90, interval=2, what="Firehose delivery of every produced record")
    return reports, truth, lake


def test_producer_reports_what_it_sent(produced):
    reports, truth, _ = produced
    for report, batch in zip(reports, truth, strict=True):
        assert report["sent"] == len(batch.records)
        assert report["failed"] == 0


def test_a_runs_params_do_not_leak_into_the_next_run(produced):
    """The fault knobs given to the runs above must not become the defaults of a later run in this process."""
    end = datetime(2026, 11, 26, 12, 1, tzinfo=UTC)
    run = run_dag("clickstream_producer", logical_date=end, conf={"users": 100, "events_per_second": 1.0})
    assert run.state == "success", task_states(run)
    used = task_result(run, "validate_params")
    assert (used["users"], used["seed"]) == (100, ProducerParams().seed)  # the typed default again
    assert used["late_fraction"] == used["duplicate_fraction"] == used["malformed_fraction"] == 0.0, used
    assert task_result(run, "produce")["by_kind"] == {"valid": task_result(run, "produce")["records"]}


def test_every_event_lands_in_its_event_hour(produced):
    _, truth, lake = produced
    assert lake.bad_keys == []
    valid_ids = {e["event_id"] for batch in truth for e in batch.valid_events()}
    assert valid_ids <= lake.event_ids(), "valid events missing from raw/"
    hours = set()
    for key, line in lake.raw_lines:
        record = json.loads(line) if line.startswith(b"{") else None
        if isinstance(record, dict) and isinstance(record.get("client_timestamp"), str):
            ts = record["client_timestamp"]
            assert f"event_date={ts[:10]}/event_hour={ts[11:13]}/" in key, (key, ts)
            hours.add(ts[:13])
    # The intervals cross 10:00, and late events go back to 09:4x: at least two hour partitions.
    assert {"2026-11-26T09", "2026-11-26T10"} <= hours


def test_duplicates_and_late_events_are_delivered_as_sent(produced):
    _, truth, lake = produced
    raw = lake.raw_payloads()
    duplicates = [rec for batch in truth for rec in batch.duplicates()]
    late = [e for batch in truth for e in batch.late_events()]
    assert duplicates and late, "fault knobs produced nothing to check"
    for rec in duplicates:
        assert raw[rec.data] >= 2, "a duplicate send must arrive twice"
    assert {e["event_id"] for e in late} <= lake.event_ids()


def test_records_failing_partitioning_go_to_the_error_prefix(produced):
    _, truth, lake = produced
    errors = lake.error_payloads()
    assert errors, "the malformed fraction should include records Firehose cannot partition"
    for key, record in lake.error_records:
        assert key.startswith("raw/errors/")
        assert {"errorCode", "errorMessage", "rawData", "arrivalTimestamp"} <= set(record)
    for batch in truth:
        for rec in batch.malformed():
            assert errors[rec.data] + lake.raw_payloads()[rec.data] >= 1, rec.kind
    # Only malformed records fail partitioning: no valid event may end up in the error prefix.
    valid_payloads = {rec.data for batch in truth for rec in batch if not rec.is_malformed}
    assert not valid_payloads & set(errors)


def test_companion_restart_mid_delivery_loses_nothing(produced, local_endpoint, aws_clients):
    cfg = settings()
    params = ProducerParams.from_dict(
        {**PARAMS, "users": 6000, "events_per_second": 60.0, "malformed_fraction": 0.0}
    )
    end = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    batch = generate(params, end - timedelta(minutes=3), end)
    KinesisWriter(aws_clients("kinesis"), cfg.stream_name).put(batch.records)
    local_endpoint.kill_companion()  # kill -9 while records sit in Kinesis and in the delivery buffer
    local_endpoint.restart_companion()
    s3 = aws_clients("s3")
    wanted = {e["event_id"] for e in batch.valid_events()}
    wait_for(
        lambda: wanted <= read_lake(s3, cfg.bucket).event_ids(),
        timeout=90,
        interval=2,
        what="delivery of every record after the companion restart",
    )

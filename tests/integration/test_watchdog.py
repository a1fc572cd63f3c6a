"""The Flink watchdog alerts on SNS (read back through the SQS inbox) when the app is not RUNNING while the
producer is active, and stays quiet when the producer is idle."""

from __future__ import annotations

import pytest

from include.config import settings
from include.watchdog import FlinkAppNotRunning, check_flink_app, recent_minute_starts
from localdev.airflow_env import run_dag, task_states
from tests.integration.lake import drain, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def inbox(local_endpoint, airflow_db, aws_clients):
    run = run_dag("clickstream_setup")
    assert run.state == "success", task_states(run)
    sqs = aws_clients("sqs")
    url = sqs.get_queue_url(QueueName=settings().alert_queue)["QueueUrl"]
    drain(sqs, url)
    return sqs, url


def test_alerts_when_app_is_not_running_and_producer_is_active(inbox, aws_clients):
    sqs, url = inbox
    kda = aws_clients("kinesisanalyticsv2")
    status = kda.describe_application(ApplicationName=settings().flink_app)["ApplicationDetail"][
        "ApplicationStatus"
    ]
    assert status != "RUNNING"
    with pytest.raises(FlinkAppNotRunning, match="clickstream_flink_lifecycle"):
        check_flink_app(producer_active=True)
    messages = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"),
        timeout=20,
        what="the watchdog alert in the SQS inbox",
    )
    assert settings().flink_app in messages[0]["Body"] and status in messages[0]["Body"]


def test_quiet_when_producer_is_idle(inbox):
    result = check_flink_app(producer_active=False)
    assert result["producer_active"] is False and result["status"] != "RUNNING"


def test_activity_window_is_the_producers_recent_minute_starts():
    from datetime import UTC, datetime

    starts = recent_minute_starts(datetime(2026, 11, 27, 10, 5, 30, tzinfo=UTC), minutes=3)
    assert [s.strftime("%H:%M") for s in starts] == ["10:05", "10:04", "10:03", "10:02"]


def test_the_dag_reads_producer_activity_through_the_task_sdk(inbox):
    """The real DAG path: ``ti.get_dr_count`` over the producer's recent runs, quiet first, then an alert."""
    from datetime import UTC, datetime

    from localdev.airflow_env import task_result

    sqs, url = inbox
    quiet = run_dag("clickstream_flink_watchdog")
    assert quiet.state == "success", task_states(quiet)
    assert task_result(quiet, "check_application")["producer_active"] is False

    minute_end = datetime.now(UTC).replace(second=0, microsecond=0)
    produced = run_dag(
        "clickstream_producer", logical_date=minute_end, conf={"users": 100, "events_per_second": 1.0}
    )
    assert produced.state == "success", task_states(produced)
    drain(sqs, url)
    alerted = run_dag("clickstream_flink_watchdog")
    assert alerted.state == "failed", task_states(alerted)
    messages = wait_for(
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"),
        timeout=20,
        what="the watchdog alert in the SQS inbox",
    )
    assert "clickstream_producer is active" in messages[0]["Body"]

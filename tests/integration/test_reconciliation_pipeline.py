"""The hourly reconciliation end to end, through the DAGs, against the real local endpoint and real PyFlink:
setup → clickstream_flink_lifecycle start → per scenario hour H: clickstream_producer for H's last minutes plus
two quiet minutes past H's settle horizon (they move the stream's watermark, i.e. its progress marker) →
clickstream_compaction of the hours H's batch reads → clickstream_reconciliation of H.

One Flink job serves the scenarios in event-time order (a later scenario's events would be late for an earlier
hour): 08:00 no faults, 09:00 late events, 10:00 duplicates, 11:00 a forced stop for part of the hour (a second
JVM: restart without snapshot), then the repair run of 11:00. Settle minutes are shortened to 2 by environment.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from include.config import settings
from include.producer import ProducerParams, generate
from include.reconciliation import layout
from localdev.airflow_env import run_dag, task_result, task_states
from tests.integration.lake import drain, read_lake, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.jvm]

DAG_ID = "clickstream_reconciliation"
SETTLE_MINUTES = 2
#: Recent hours: the stream's late and rejected ledgers are partitioned by arrival (processing) time, and the
#: reconciliation reads them up to CLICKSTREAM_RECONCILE_LEDGER_HOURS after H, as in production.
H1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)  # no faults
H2 = H1 + timedelta(hours=1)  # late events
H3 = H1 + timedelta(hours=2)  # duplicates
H4 = H1 + timedelta(hours=3)  # forced stop for part of the hour
PARAMS = {"users": 400, "events_per_second": 2.0, "seed": 11}
QUIET = {"users": 400, "events_per_second": 0.5, "seed": 12}
MINUTES = 5
COMPACT_CONF = {"allowed_lateness_seconds": 0}


# ------------------------------------------------------------------------------------------------ helpers
def _lifecycle(**conf):
    run = run_dag("clickstream_flink_lifecycle", conf=conf)
    assert run.state == "success", task_states(run)
    return task_states(run)


def _produce(start: datetime, minutes: int, params: dict) -> list[bytes]:
    """clickstream_producer for each minute [start, start + minutes); the records it sent."""
    sent = []
    for i in range(minutes):
        end = start + timedelta(minutes=i + 1)
        run = run_dag("clickstream_producer", logical_date=end, conf=params)
        assert run.state == "success", task_states(run)
        sent += [
            r.data
            for r in generate(ProducerParams.from_dict(params), end - timedelta(minutes=1), end).records
        ]
    return sent


def _produce_hour(hour: datetime, params: dict, minutes: int = MINUTES) -> list[bytes]:
    return _produce(hour + timedelta(hours=1, minutes=-minutes), minutes, params)


def _produce_quiet(hour: datetime) -> list[bytes]:
    """Two quiet minutes from the settle horizon on: the window ending at the horizon + 1 min closes."""
    return _produce(hour + timedelta(hours=1, minutes=SETTLE_MINUTES), 2, QUIET)


def _wait_for_firehose(s3, sent: list[bytes]) -> None:
    want = Counter(sent)

    def delivered():
        have = read_lake(s3, settings().bucket).raw_payloads()
        return all(have[line] >= n for line, n in want.items())

    wait_for(delivered, timeout=120, interval=2, what=f"{len(sent)} records delivered by Firehose")


def _compact(*hours: datetime) -> None:
    for hour in hours:
        run = run_dag("clickstream_compaction", logical_date=hour + timedelta(hours=1), conf=COMPACT_CONF)
        assert run.state == "success", task_states(run)


def _wait_until_ready(hour: datetime) -> dict:
    from include.reconciliation.tasks import readiness

    return wait_for(
        lambda: (state := readiness(hour))["ready"] and state,
        timeout=180,
        interval=3,
        what=f"the stream's progress marker past the settle horizon of {hour:%H}:00",
    )


def _reconcile(hour: datetime, **conf):
    # run_dag leaves the DAG's deadline alert to the scheduler (Airflow 3.3.2's dag.test() cannot run it).
    return run_dag(DAG_ID, logical_date=hour + timedelta(hours=1), conf=conf or None)


def _report(s3, hour: datetime) -> dict:
    body = s3.get_object(Bucket=settings().bucket, Key=layout.report_key(settings(), hour))["Body"].read()
    return json.loads(body)


def _partition(glue, hour: datetime) -> dict:
    return glue.get_partition(
        DatabaseName=settings().glue_database,
        TableName="sessions",
        PartitionValues=[f"{hour:%Y-%m-%d}", f"{hour:%H}"],
    )["Partition"]


def _alerts(sqs, url: str) -> list[str]:
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def _asset_extras() -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "clickstream_sessions")
            .order_by(AssetEvent.id)
        ).all()
    return [r[0] for r in rows]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def lake(airflow_db, tmp_path_factory):
    """A fresh endpoint (the app reads from TRIM_HORIZON: other modules' events must not move its watermark),
    setup, the Flink app started; short settle minutes for the reconciliation."""
    from localdev import airflow_env as local_airflow
    from localdev.aws import LocalEndpoint
    from tests.local_aws.support import free_port_pair, make_client

    endpoint = LocalEndpoint(port=free_port_pair(), state_dir=tmp_path_factory.mktemp("reconciliation-aws"))
    endpoint.start()
    saved = {
        k: os.environ.get(k) for k in ("AIRFLOW_CONN_AWS_DEFAULT", "CLICKSTREAM_RECONCILE_SETTLE_MINUTES")
    }
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = local_airflow.aws_connection_uri(endpoint.port)
    os.environ["CLICKSTREAM_RECONCILE_SETTLE_MINUTES"] = str(SETTLE_MINUTES)

    def make(service: str):
        return make_client(endpoint.url, service)

    try:
        run = run_dag("clickstream_setup")
        assert run.state == "success", task_states(run)
        _lifecycle(action="start")
        sqs = make("sqs")
        inbox = sqs.get_queue_url(QueueName=settings().alert_queue)["QueueUrl"]
        drain(sqs, inbox)
        yield make, inbox
        kda = make("kinesisanalyticsv2")
        detail = kda.describe_application(ApplicationName=settings().flink_app)["ApplicationDetail"]
        if detail["ApplicationStatus"] == "RUNNING":
            _lifecycle(action="stop", force=True)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        endpoint.stop()


@pytest.fixture(scope="module")
def clean_hour(lake):
    """08:00 without faults; the sensor's readiness checked before its inputs are complete."""
    from include.reconciliation.tasks import readiness

    make, _ = lake
    s3 = make("s3")
    sent = _produce_hour(H1, PARAMS)
    early = readiness(H1)
    assert early["ready"] is False
    assert early["missing_manifests"] == [f"{H1 + timedelta(hours=h):%Y-%m-%dT%H}" for h in (-1, 0, 1)]
    _wait_for_firehose(s3, sent)
    _compact(H1 - timedelta(hours=1), H1, H1 + timedelta(hours=1))
    # Every manifest is there, but the stream has not passed the horizon (no event after H + 1 h yet).
    not_yet = readiness(H1)
    assert not_yet["missing_manifests"] == [] and not_yet["ready"] is False, not_yet
    assert not_yet["stream_progress"] is None or not_yet["stream_progress"] < not_yet["settle_horizon"]
    sent += _produce_quiet(H1)
    _wait_for_firehose(s3, sent)
    _compact(H1 + timedelta(hours=1))
    ready = _wait_until_ready(H1)
    run = _reconcile(H1)
    return run, ready, not_yet


def _scenario(lake, hour: datetime, params: dict):
    make, _ = lake
    s3 = make("s3")
    sent = _produce_hour(hour, params) + _produce_quiet(hour)
    _wait_for_firehose(s3, sent)
    _compact(hour, hour + timedelta(hours=1))
    _wait_until_ready(hour)
    return _reconcile(hour)


# ------------------------------------------------------------------------------------------------ tests
def test_the_dag_parses_follows_policy_and_its_params_come_from_the_typed_source(airflow_db):
    from include.callbacks import alert_on_missed_deadline
    from include.dag_params import param_specs
    from include.dag_policy import OWNER
    from include.reconciliation.params import ReconcileParams
    from localdev.airflow_env import load_dag

    dag = load_dag(DAG_ID)
    assert dag.owner == OWNER and {"clickstream", "layer:quality", "tier:1"} == set(dag.tags)
    assert list(dag.params) == list(param_specs(ReconcileParams))
    assert [t.task_id for t in dag.topological_sort()] == ["wait_for_inputs", "reconcile", "check"]
    sensor = dag.get_task("wait_for_inputs")
    assert sensor.mode == "reschedule"
    assert sensor.timeout == settings().reconcile_wait_timeout_minutes * 60

    (deadline,) = dag.deadline
    assert deadline.interval == timedelta(hours=1, minutes=settings().reconcile_deadline_minutes)
    assert type(deadline.reference).__name__ == "DagRunLogicalDateDeadline"
    assert deadline.callback.path == "include.callbacks.alert_on_missed_deadline"
    assert alert_on_missed_deadline.__module__ == "include.callbacks"


def test_no_faults_passes_fully_matched_and_publishes_the_sessions_partition(lake, clean_hour):
    make, _ = lake
    run, ready, not_yet = clean_hour
    assert run.state == "success", task_states(run)
    assert ready["stream_progress"] >= ready["settle_horizon"]
    summary = task_result(run, "reconcile")
    report = _report(make("s3"), H1)
    assert report["status"] == "passed" and report["passed"] is True
    compared = report["totals"]["batch"]["sessions"]
    assert compared > 50 and report["counts"]["matched"] == compared, report["counts"]
    assert report["totals"]["match_rate"] == 1.0 and report["differences"] == []
    assert summary["counts"] == report["counts"] and summary["links"]["report"].endswith(
        f"hr={H1:%H}/report.json"
    )
    part = _partition(make("glue"), H1)
    assert part["Parameters"]["reconciliation_status"] == "passed"
    assert part["StorageDescriptor"]["Location"].endswith(f"batch/sessions/dt={H1:%Y-%m-%d}/hr={H1:%H}/")
    extras = _asset_extras()
    assert extras and extras[-1]["counts"] == report["counts"] and extras[-1]["status"] == "passed"


def test_a_rerun_republishes_the_same_files(lake, clean_hour):
    s3 = lake[0]("s3")
    keys = [layout.report_key(settings(), H1), layout.batch_sessions_key(settings(), H1)]
    before = [s3.get_object(Bucket=settings().bucket, Key=k)["Body"].read() for k in keys]
    run = _reconcile(H1)
    assert run.state == "success", task_states(run)
    assert [s3.get_object(Bucket=settings().bucket, Key=k)["Body"].read() for k in keys] == before


def test_hours_before_the_stream_started_are_batch_only(lake, clean_hour):
    run = _reconcile(H1, stream_started_at=f"{H2:%Y-%m-%dT%H}:00:00Z")
    assert run.state == "success", task_states(run)
    report = _report(lake[0]("s3"), H1)
    assert (
        report["status"] == "batch_only"
        and report["counts"]["batch_only"] == report["totals"]["batch"]["sessions"]
    )
    assert _partition(lake[0]("glue"), H1)["Parameters"]["reconciliation_status"] == "batch_only"
    assert task_result(run, "wait_for_inputs")["waits_for_stream"] is False


def test_late_events_pass_and_every_difference_is_late(lake, clean_hour):
    run = _scenario(lake, H2, {**PARAMS, "late_fraction": 0.05, "late_delay_seconds": 30.0})
    report = _report(lake[0]("s3"), H2)
    assert run.state == "success", (task_states(run), report["counts"])
    assert report["status"] == "passed"
    assert report["counts"]["late"] > 0, report["counts"]
    assert {d["cause"] for d in report["differences"]} == {"late"}
    assert report["totals"]["stream"]["late_events"] > 0


def test_duplicates_pass(lake, clean_hour):
    run = _scenario(lake, H3, {**PARAMS, "duplicate_fraction": 0.05})
    report = _report(lake[0]("s3"), H3)
    assert run.state == "success", (task_states(run), report["counts"])
    assert report["status"] == "passed" and report["totals"]["batch"]["duplicates_removed"] > 0
    assert report["totals"]["batch"]["duplicate_rate"] > 0
    assert (
        report["counts"]["matched"] + report["counts"]["duplicate"] == report["totals"]["batch"]["sessions"]
    )


def test_a_forced_stop_fails_alerts_and_the_repair_run_records_the_repair(lake, clean_hour, monkeypatch):
    make, inbox = lake
    s3, sqs = make("s3"), make("sqs")
    sent = _produce(H4 + timedelta(minutes=50), 3, PARAMS)
    states = _lifecycle(action="stop", force=True)
    assert states["stop_application"] == "success", states
    monkeypatch.setenv("CLICKSTREAM_FLINK_SOURCE_INIT_POSITION", "LATEST")
    run = run_dag("clickstream_setup")  # the stopped application reads from LATEST from now on
    assert run.state == "success", task_states(run)
    sent += _produce(H4 + timedelta(minutes=53), 3, PARAMS)  # while the application is stopped
    _lifecycle(action="start", restore="SKIP_RESTORE_FROM_SNAPSHOT")
    sent += _produce(H4 + timedelta(minutes=56), 4, PARAMS) + _produce_quiet(H4)
    _wait_for_firehose(s3, sent)
    _compact(H4, H4 + timedelta(hours=1))
    _wait_until_ready(H4)
    drain(sqs, inbox)

    failed = _reconcile(H4)
    report = _report(s3, H4)
    assert failed.state == "failed" and task_states(failed)["check"] == "failed", task_states(failed)
    assert report["status"] == "failed" and report["counts"]["missing_in_stream"] > 0, report["counts"]
    alerts = wait_for(
        lambda: _alerts(sqs, inbox), timeout=20, what="the reconciliation alert in the SQS inbox"
    )
    assert len(alerts) == 1, alerts  # the task's own alert; the generic failure alert is not sent twice
    text = alerts[0]  # the inbox subscribes with raw message delivery: the body is the message
    assert text.startswith(f"The reconciliation of hour {H4:%Y-%m-%dT%H}:00:00.000Z failed"), text
    assert f"missing_in_stream {report['counts']['missing_in_stream']}" in text
    assert f"reports/reconciliation/dt={H4:%Y-%m-%d}/hr={H4:%H}/report.json" in text
    assert "airflow backfill create --dag-id clickstream_reconciliation" in text and '"repair": true' in text
    assert _partition(make("glue"), H4)["Parameters"]["reconciliation_status"] == "failed"

    repaired = _reconcile(H4, repair=True)
    assert repaired.state == "success", task_states(repaired)
    after = _report(s3, H4)
    assert after["status"] == "repaired" and after["passed"] is True
    assert after["repair"]["previous_status"] == "failed"
    assert (
        after["repair"]["repaired_by_batch"]
        == report["counts"]["missing_in_stream"] + report["counts"]["mismatch"]
    )
    assert after["counts"] == report["counts"]  # the stream is not rewritten: the batch stands in for it
    part = _partition(make("glue"), H4)["Parameters"]
    assert part["reconciliation_status"] == "repaired" and part["reconciliation_previous_status"] == "failed"
    again = _reconcile(H4, repair=True)  # a second repair run publishes the same report
    assert again.state == "success" and _report(s3, H4) == after


def test_the_deadline_callback_publishes_the_alert(lake):
    from include.callbacks import alert_on_missed_deadline

    make, inbox = lake
    sqs = make("sqs")
    drain(sqs, inbox)
    context = {
        "dag_run": {
            "dag_id": DAG_ID,
            "run_id": "scheduled__2026-11-20T12:00:00+00:00",
            "state": "running",
            "data_interval_start": "2026-11-20T12:00:00Z",
        },
        "deadline": {"id": "x", "deadline_time": "2026-11-20T16:00:00Z"},
    }
    alert_on_missed_deadline(context=context)
    alerts = wait_for(lambda: _alerts(sqs, inbox), timeout=20, what="the deadline alert in the SQS inbox")
    assert (
        "has not finished by its deadline 2026-11-20T16:00:00Z" in alerts[0] and "2026-11-20T12" in alerts[0]
    )

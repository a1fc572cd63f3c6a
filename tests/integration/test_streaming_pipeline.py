"""End to end through the DAGs: setup → clickstream_flink_lifecycle (start) → producer intervals for more than
an hour of event time → sessions in S3 equal the reference sessions of the producer's ground truth; stop with a
snapshot → produce more → start from the snapshot → still equal, none lost and none twice. Then a forced stop
and a start without a snapshot make the loss visible: the sessions of the minutes the app did not run are
missing, which is what the reconciliation has to find.

The lifecycle DAG uses the amazon provider's KinesisAnalyticsV2 operators and sensors unchanged; the local
endpoint's companion runs the real Flink SQL in PyFlink behind them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from include.config import settings
from include.producer import ProducerParams, generate
from include.sessions.contract import SessionContract
from localdev.airflow_env import run_dag, task_result, task_states
from localdev.reference import check_records, closed_sessions
from tests.integration.lake import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.jvm]

START = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
PARAMS = {"users": 400, "events_per_second": 2.0, "seed": 3}
FIRST_MINUTES = 62  # more than an hour of event time, crossing 09:00
MORE_MINUTES = 4
CONTRACT = SessionContract()


def _lifecycle(**conf):
    run = run_dag("clickstream_flink_lifecycle", conf=conf)
    assert run.state == "success", task_states(run)
    return task_states(run)


def _produce(first_minute: int, minutes: int) -> list[str]:
    """Run the producer DAG for minutes [first, first + minutes) after START; the records it sent."""
    records = []
    for i in range(first_minute, first_minute + minutes):
        end = START + timedelta(minutes=i + 1)
        run = run_dag("clickstream_producer", logical_date=end, conf=PARAMS)
        assert run.state == "success", task_states(run)
        assert task_result(run, "produce")["by_kind"] == {"valid": task_result(run, "produce")["records"]}
        batch = generate(ProducerParams.from_dict(PARAMS), end - timedelta(minutes=1), end)
        records.extend(rec.data.decode() for rec in batch.records)
    return records


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _closed_reference_sessions(records: list[str]) -> dict[str, dict]:
    events = check_records(records, CONTRACT, now_ms=int(datetime.now(UTC).timestamp() * 1000)).events
    return {s["session_id"]: s for s in closed_sessions(events, CONTRACT)}


def _read_sink(s3, name: str) -> list[dict]:
    bucket, prefix = settings().bucket, f"{settings().streaming_prefix}{name}/"
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            if obj["Key"].rsplit("/", 1)[-1].startswith((".", "_")):
                continue
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            out.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return out


def _why_missing(s3, expected: dict[str, dict]) -> str:
    """What a failure needs to be explained: the missing sessions and what the late and rejected sinks hold."""
    got = {r["session_id"] for r in _read_sink(s3, "sessions")}
    missing = [s for sid, s in expected.items() if sid not in got]
    late = _read_sink(s3, "late_events")
    rejected = Counter(r["reason"] for r in _read_sink(s3, "rejected_events"))
    return f"{len(missing)} missing, e.g. {missing[:3]}; late events: {len(late)}; rejected: {dict(rejected)}"


def _assert_sessions_match(s3, expected: dict[str, dict]) -> list[dict]:
    def complete():
        rows = _read_sink(s3, "sessions")
        return rows if {r["session_id"] for r in rows} >= set(expected) else None

    try:
        rows = wait_for(complete, timeout=240, interval=3, what=f"{len(expected)} closed sessions in S3")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {_why_missing(s3, expected)}") from None
    ids = [r["session_id"] for r in rows]
    assert len(ids) == len(set(ids)), "a session was written twice"
    by_id = {r["session_id"]: r for r in rows}
    for sid, want in expected.items():
        got = by_id[sid]
        for field in ("user_id", "device_id", "session_start", "last_event_at", "event_count", "first_event"):
            assert got[field] == want[field], (sid, field, got[field], want[field])
    return rows


@pytest.fixture(scope="module")
def own_endpoint(airflow_db, tmp_path_factory):
    """A fresh endpoint for this module. The app reads its stream from TRIM_HORIZON, and the session endpoint's
    stream already holds the other modules' events of later days: they would move the watermark past this
    module's events, which would all (rightly) go to the late sink."""
    from localdev import airflow_env as local_airflow
    from localdev.aws import LocalEndpoint
    from tests.local_aws.support import free_port_pair, make_client

    endpoint = LocalEndpoint(port=free_port_pair(), state_dir=tmp_path_factory.mktemp("streaming-aws"))
    endpoint.start()
    saved = os.environ["AIRFLOW_CONN_AWS_DEFAULT"]
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = local_airflow.aws_connection_uri(endpoint.port)

    def make(service: str):
        return make_client(endpoint.url, service)

    try:
        yield make
    finally:
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = saved
        endpoint.stop()


@pytest.fixture(scope="module")
def running_app(own_endpoint):
    run = run_dag("clickstream_setup")
    assert run.state == "success", task_states(run)
    states = _lifecycle(action="start")
    assert states["start_application"] == "success" or states["already_in_state"] == "success", states
    yield own_endpoint
    kda = own_endpoint("kinesisanalyticsv2")
    status = kda.describe_application(ApplicationName=settings().flink_app)["ApplicationDetail"][
        "ApplicationStatus"
    ]
    if status == "RUNNING":
        _lifecycle(action="stop", force=True)


def test_sessions_equal_ground_truth_across_a_snapshot(running_app):
    s3, kda = running_app("s3"), running_app("kinesisanalyticsv2")
    records = _produce(0, FIRST_MINUTES)
    first = _closed_reference_sessions(records)
    assert len(first) > 1000
    _assert_sessions_match(s3, first)

    states = _lifecycle(action="start")  # already RUNNING: a no-op success
    assert states["already_in_state"] == "success" and states["start_application"] == "skipped", states

    states = _lifecycle(action="stop")
    assert states["stop_application"] == "success", states
    snapshots = kda.list_application_snapshots(ApplicationName=settings().flink_app)["SnapshotSummaries"]
    assert snapshots and snapshots[-1]["SnapshotStatus"] == "READY"

    records += _produce(FIRST_MINUTES, MORE_MINUTES)  # while the application is stopped
    states = _lifecycle(action="start", restore="RESTORE_FROM_LATEST_SNAPSHOT")
    assert states["start_application"] == "success", states
    both = _closed_reference_sessions(records)
    assert set(first) < set(both)
    _assert_sessions_match(s3, both)


def test_a_forced_stop_makes_the_lost_sessions_visible(running_app, monkeypatch):
    """Force stop (no snapshot), minutes produced while stopped, then a fresh start reading from LATEST: the
    sessions of the stopped minutes never reach S3, while everything after the restart is complete."""
    s3, kda = running_app("s3"), running_app("kinesisanalyticsv2")
    app = settings().flink_app
    snapshots_before = kda.list_application_snapshots(ApplicationName=app)["SnapshotSummaries"]

    states = _lifecycle(action="stop", force=True)
    assert states["stop_application"] == "success", states
    assert kda.list_application_snapshots(ApplicationName=app)["SnapshotSummaries"] == snapshots_before

    monkeypatch.setenv("CLICKSTREAM_FLINK_SOURCE_INIT_POSITION", "LATEST")
    run = run_dag("clickstream_setup")  # updates the stopped application's source position
    assert run.state == "success", task_states(run)
    assert task_result(run, "summary")[f"kinesisanalyticsv2:{app}"] == "updated"

    stopped_from = FIRST_MINUTES + MORE_MINUTES
    while_stopped = _produce(stopped_from, 4)
    states = _lifecycle(action="start", restore="SKIP_RESTORE_FROM_SNAPSHOT")
    assert states["start_application"] == "success", states
    after = _produce(stopped_from + 4, 6)

    restarted = _closed_reference_sessions(after)
    assert len(restarted) > 50
    rows = _assert_sessions_match(s3, restarted)

    got = {r["session_id"] for r in rows}
    lost = {
        sid
        for sid, s in _closed_reference_sessions(while_stopped).items()
        if _ms(s["session_start"]) - CONTRACT.gap_ms
        > _ms((START + timedelta(minutes=stopped_from)).isoformat())
    }
    assert len(lost) > 10, "the stopped minutes should hold sessions of their own"
    assert not lost & got, "sessions of minutes the application never read reached S3"

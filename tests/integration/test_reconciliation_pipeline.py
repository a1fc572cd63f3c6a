"""The hourly reconciliation end to end, through the DAGs, against the real local endpoint and real PyFlink:
setup → clickstream_flink_lifecycle start → per scenario hour H: clickstream_producer for H's last minutes plus
two quiet minutes past H's settle horizon (they move the stream's watermark, i.e. its progress marker) →
clickstream_compaction of the hours H's batch reads → clickstream_reconciliation of H.

One Flink job serves the scenarios in event-time order (a later scenario's events would be late for an earlier
hour): H1 no faults, H2 late events, H3 duplicates, HR copies resent past the dedup horizon, HA/HB sessions
across hour boundaries, H4 a forced stop for part of the hour (a second JVM: restart without snapshot), then
the repair run of H4. Settle minutes are shortened to 2 by environment, and the job's dedup horizon to 10 s by
its contract property group (the test cannot wait 10 minutes between a record and its copy).
Every record the producer runs send is kept in ``SENT``: the ground truth the reports are checked against.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from include.config import settings
from include.producer import ProducedRecord, ProducerParams, generate
from include.reconciliation import layout
from include.sessions.contract import SessionContract
from localdev import reference
from localdev.airflow_env import run_dag, task_result, task_states
from tests.integration.lake import drain, read_lake, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.jvm]

DAG_ID = "clickstream_reconciliation"
SETTLE_MINUTES = 2
#: Recent hours: the stream's late and rejected ledgers are partitioned by arrival (processing) time, and the
#: reconciliation reads them up to CLICKSTREAM_RECONCILE_LEDGER_HOURS after H, as in production.
H1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=9)  # no faults
H2 = H1 + timedelta(hours=1)  # late events
H3 = H1 + timedelta(hours=2)  # duplicates
HR = H1 + timedelta(hours=3)  # copies resent past the dedup horizon (its quiet minutes are in H1 + 4 h)
HA = H1 + timedelta(hours=5)  # sessions across HA/HB and HB/HB+1, some open at the settle horizon
HB = H1 + timedelta(hours=6)
H4 = H1 + timedelta(hours=7)  # forced stop for part of the hour
PARAMS = {"users": 400, "events_per_second": 2.0, "seed": 11}
QUIET = {"users": 400, "events_per_second": 0.5, "seed": 12}
MINUTES = 5
COMPACT_CONF = {"allowed_lateness_seconds": 0}
#: The running job's dedup horizon (contract property dedup.horizon.ms; at least the 5 s watermark delay).
DEDUP_HORIZON_MS = 10_000
CONTRACT = SessionContract(dedup_horizon_ms=DEDUP_HORIZON_MS)
#: Every record the module's producer runs sent, in send order (the ground truth).
SENT: list[ProducedRecord] = []


# ------------------------------------------------------------------------------------------------ helpers
def _lifecycle(**conf):
    run = run_dag("clickstream_flink_lifecycle", conf=conf)
    assert run.state == "success", task_states(run)
    return task_states(run)


def _produce(start: datetime, minutes: int, params: dict) -> list[bytes]:
    """clickstream_producer for each minute [start, start + minutes); the records it sent (kept in SENT)."""
    sent = []
    for i in range(minutes):
        end = start + timedelta(minutes=i + 1)
        run = run_dag("clickstream_producer", logical_date=end, conf=params)
        assert run.state == "success", task_states(run)
        records = generate(ProducerParams.from_dict(params), end - timedelta(minutes=1), end).records
        SENT.extend(records)
        sent += [r.data for r in records]
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


def _ms(value: datetime | str) -> int:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return round(value.timestamp() * 1000)


def _truth(hour: datetime, extension_hours: int = 0) -> tuple[dict[str, dict], dict[str, dict]]:
    """(settled, deferred) sessions starting in ``hour`` by session_id, from every event SENT up to the hour's
    settle horizon (extended by ``extension_hours``): what the batch must compute."""
    horizon = _ms(hour + timedelta(hours=1 + extension_hours, minutes=SETTLE_MINUTES))
    events: dict[str, reference.Event] = {}
    for r in SENT:
        if r.event is not None and r.event_id not in events and r.event_ms <= horizon:
            events[r.event_id] = reference.to_event(reference.extract_fields(r.data.decode()))
    settled, deferred = {}, {}
    for row in reference.sessionize(events.values(), CONTRACT):
        if _ms(hour) <= _ms(row["session_start"]) < _ms(hour + timedelta(hours=1)):
            unsettled = _ms(row["last_event_at"]) + CONTRACT.gap_ms > horizon
            (deferred if unsettled else settled)[row["session_id"]] = row
    return settled, deferred


def _batch_sessions(s3, hour: datetime) -> list[dict]:
    body = s3.get_object(Bucket=settings().bucket, Key=layout.batch_sessions_key(settings(), hour))["Body"]
    return pq.read_table(io.BytesIO(body.read())).to_pylist()


def _stream_session_files(s3, hour: datetime) -> list[tuple[str, list[dict]]]:
    """(key, rows) of the committed part files of the stream's session partition of ``hour``."""
    prefix = layout.stream_prefix(settings(), layout.STREAM_SESSIONS, hour)
    listed = s3.list_objects_v2(Bucket=settings().bucket, Prefix=prefix).get("Contents", [])
    files = []
    for obj in listed:
        if layout.is_committed_part(obj["Key"]):
            text = s3.get_object(Bucket=settings().bucket, Key=obj["Key"])["Body"].read().decode()
            files.append((obj["Key"], [json.loads(line) for line in text.splitlines() if line.strip()]))
    return files


def _wait_for_stream(s3, until: datetime) -> None:
    """Until the job has committed a metrics window ending at ``until``: it has read the events before it."""
    from include.reconciliation.progress import stream_progress

    def passed():
        marker = stream_progress(s3, settings().bucket, settings(), until, datetime.now(UTC))
        return marker is not None and marker >= until

    wait_for(passed, timeout=120, interval=2, what=f"the stream's progress past {until:%H:%M}")


def _extra_of(hour: datetime) -> dict:
    """The newest clickstream_sessions asset event's extra for ``hour``."""
    wanted = f"{hour:%Y-%m-%dT%H}:00:00.000Z"
    return [e for e in _asset_extras() if e.get("hour") == wanted][-1]


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
        _set_contract(make("kinesisanalyticsv2"), CONTRACT)
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


def _set_contract(kda, contract: SessionContract) -> None:
    """Run the (stopped) application with ``contract``: its contract.config.0 property group, as on AWS."""
    from include.flink_app.flink_job import GROUP_CONTRACT

    name = settings().flink_app
    detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
    described = detail["ApplicationConfigurationDescription"]["EnvironmentPropertyDescriptions"]
    groups = [g for g in described["PropertyGroupDescriptions"] if g["PropertyGroupId"] != GROUP_CONTRACT]
    groups.append({"PropertyGroupId": GROUP_CONTRACT, "PropertyMap": contract.to_properties()})
    kda.update_application(
        ApplicationName=name,
        CurrentApplicationVersionId=detail["ApplicationVersionId"],
        ApplicationConfigurationUpdate={"EnvironmentPropertyUpdates": {"PropertyGroups": groups}},
    )
    wait_for(
        lambda: (
            kda.describe_application(ApplicationName=name)["ApplicationDetail"]["ApplicationStatus"]
            == "READY"
        ),
        timeout=60,
        what=f"{name} READY after the contract update",
    )


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
    assert [t.task_id for t in dag.topological_sort()][:2] == ["wait_for_inputs", "reconcile"]
    assert dag.get_task("reconcile").downstream_task_ids == {"check", "complete_earlier_hours"}
    assert dag.get_task("complete_earlier_hours").max_active_tis_per_dag == 1
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


def test_stream_sessions_table_reads_the_files_flink_writes(lake, clean_hour):
    """The Glue table clickstream_setup created over the stream's sessions: a file the job wrote has exactly its
    columns with values of its types, under the partition its projection names, by session-start hour."""
    from include.reconciliation.catalog import STREAM_SESSIONS_TABLE

    make, _ = lake
    table = make("glue").get_table(DatabaseName=settings().glue_database, Name=STREAM_SESSIONS_TABLE)["Table"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    python_type = {"string": str, "int": int, "bigint": int}
    files = _stream_session_files(make("s3"), H1)
    # every session the stream wrote for H1 (all closed), as the reconciliation counted them
    assert sum(len(rows) for _, rows in files) == _report(make("s3"), H1)["totals"]["stream"]["sessions"] > 50
    template = table["Parameters"]["storage.location.template"]
    partition = template.replace("${dt}", f"{H1:%Y-%m-%d}").replace("${hr}", f"{H1:%H}")
    for key, rows in files:
        assert f"s3://{settings().bucket}/{key}".startswith(partition), (key, partition)
        for row in rows:
            assert list(row) == [name for name, _ in columns], row
            assert all(type(row[name]) is python_type[typ] for name, typ in columns), row
            assert row["session_start"].startswith(f"{H1:%Y-%m-%dT%H}:")


@pytest.fixture(scope="module")
def resent_hour(lake, clean_hour):
    """HR: originals in minutes 55-57; once the job has read them and its dedup horizon has passed, minutes 58-59
    resend a fifth of the events of minutes 55-56 (180 s after their original)."""
    make, _ = lake
    s3 = make("s3")
    sent = _produce(HR + timedelta(minutes=55), 3, PARAMS)
    _wait_for_stream(s3, HR + timedelta(minutes=57))
    time.sleep(DEDUP_HORIZON_MS / 1000 + 5)  # the job forgets the event ids of minutes 55-56
    sent += _produce(
        HR + timedelta(minutes=58), 2, {**PARAMS, "resend_fraction": 0.2, "resend_delay_seconds": 180.0}
    )
    sent += _produce_quiet(HR)
    _wait_for_firehose(s3, sent)
    _compact(HR - timedelta(hours=1), HR, HR + timedelta(hours=1))  # HR - 1 h too: it may run on its own (-k)
    _wait_until_ready(HR)
    return _reconcile(HR)


def test_copies_resent_past_the_dedup_horizon_pass_and_agree_with_the_ground_truth(lake, resent_hour):
    report = _report(lake[0]("s3"), HR)
    assert resent_hour.state == "success", (task_states(resent_hour), report["counts"])
    resent = [r for r in SENT if r.kind == "resent" and _ms(HR) <= r.event_ms < _ms(HR + timedelta(hours=1))]
    assert len(resent) > 10
    settled, deferred = _truth(HR)
    batch, stream = report["totals"]["batch"], report["totals"]["stream"]
    assert report["status"] == "passed" and report["passed"] is True
    # The job had forgotten the originals, so it did not drop the copies as duplicates: far behind the
    # watermark, each went to its late ledger. Its sessions count distinct event ids, so no session counts a
    # copy: every session matches, and the copies show as the batch's extra raw copies and the duplicate rate.
    assert stream["late_events"] == len({r.event_id for r in resent})
    assert batch["extra_raw_copies"] == len(resent)
    assert batch["duplicate_rate"] == round(len(resent) / (batch["hour_events"] + len(resent)), 6)
    assert report["counts"]["matched"] == batch["sessions"] == len(settled), report["counts"]
    assert report["counts"]["deferred"] == batch["deferred_sessions"] == len(deferred)
    assert batch["events"] == stream["compared_events"] == sum(s["event_count"] for s in settled.values())
    assert report["differences"] == []
    extra = _extra_of(HR)
    assert extra["status"] == "passed" and extra["counts"] == report["counts"]
    assert extra["totals"]["batch_sessions"] == len(settled)
    assert extra["totals"]["duplicate_rate"] == batch["duplicate_rate"] > 0


@pytest.fixture(scope="module")
def boundary_hours(lake, resent_hour):
    """HA and HB: the producer runs over both hour boundaries (HA→HB, HB→HB+1) and past each settle horizon."""
    make, _ = lake
    s3 = make("s3")
    sent = _produce(HB - timedelta(minutes=2), 5, PARAMS)
    sent += _produce(HB + timedelta(minutes=58), 5, PARAMS)
    _wait_for_firehose(s3, sent)
    runs, first = {}, {}
    # HB + 1 h is compacted after HA's run, as in production: HA's run cannot read past its own horizon, and HB's
    # run completes HA's open sessions (see the test below)
    for hour, compact in ((HA, (HA, HB)), (HB, (HB + timedelta(hours=1),))):
        _compact(*compact)
        _wait_until_ready(hour)
        runs[hour] = _reconcile(hour)
        first[hour] = (
            _report(s3, hour),
            _batch_sessions(s3, hour),
            _extra_of(hour),
        )  # as its own run left it
    return runs, first


def test_sessions_across_the_hour_are_attributed_to_their_start_hour_once(lake, boundary_hours):
    make, _ = lake
    s3, glue = make("s3"), make("glue")
    runs, first = boundary_hours
    truth = {hour: _truth(hour) for hour in (HA, HB)}
    published: Counter = Counter()
    streamed: dict[datetime, Counter] = {}
    for hour in (HA, HB):
        run, (report, rows, extra) = runs[hour], first[hour]
        assert run.state == "success", (task_states(run), report["counts"])
        settled, deferred = truth[hour]
        next_hour = _ms(hour + timedelta(hours=1))
        assert any(_ms(s["last_event_at"]) >= next_hour for s in settled.values()), (
            f"no settled session of {hour:%H}:00 runs into the next hour"
        )
        assert report["status"] == "passed" and report["differences"] == []
        assert report["counts"]["matched"] == report["totals"]["batch"]["sessions"] == len(settled)
        assert report["counts"]["deferred"] == report["totals"]["batch"]["deferred_sessions"] == len(deferred)
        assert _partition(glue, hour)["Parameters"]["reconciliation_status"] == "passed"
        assert extra["counts"] == report["counts"]
        published.update(r["session_id"] for r in rows)
        # settled sessions are published exactly as the producer's events make them; deferred ones too
        # (as far as the settle horizon), in the partition of their start hour
        assert {r["session_id"]: r for r in rows if r["session_id"] in settled} == settled
        assert {r["session_id"] for r in rows} == set(settled) | set(deferred)
        streamed[hour] = Counter(r["session_id"] for _, got in _stream_session_files(s3, hour) for r in got)
    # a session across HA/HB is in HA's report, batch partition and stream partition, and nowhere in HB's
    assert set(published.values()) == {1}
    assert len(published) == sum(len(s) + len(d) for s, d in truth.values())
    for hour, other in ((HA, HB), (HB, HA)):
        settled = truth[hour][0]
        assert all(streamed[hour][sid] == 1 for sid in settled), f"stream partition of {hour:%H}:00"
        assert not set(settled) & set(streamed[other])


def test_a_session_open_at_the_settle_horizon_is_deferred_on_both_sides(lake, boundary_hours):
    """HA's settle horizon is HB + 2 min; the producer ran to HB + 3 min, so the stream has closed HA's sessions
    that were still open at the horizon: both sides count them deferred, none is compared."""
    report = boundary_hours[1][HA][0]
    _, deferred = _truth(HA)
    assert deferred, "no session of HA is open at its settle horizon"
    totals = report["totals"]
    assert totals["batch"]["deferred_sessions"] == totals["stream"]["deferred_sessions"] == len(deferred)
    assert report["counts"]["deferred"] == len(deferred)
    assert report["totals"]["unexplained_sessions"] == 0
    compared = {d["session_start"] for d in report["differences"]}
    assert not compared & {s["session_start"] for s in deferred.values()}


def test_the_next_hours_run_completes_the_sessions_open_at_the_settle_horizon(lake, boundary_hours):
    """HB's run republishes HA read up to HB's horizon: HA's deferred sessions are whole and compared, the
    partition and an asset event follow, and a rerun of HA (its inputs for that horizon are in) publishes the
    same bytes."""
    make, _ = lake
    s3, glue = make("s3"), make("glue")
    runs, first = boundary_hours
    assert task_states(runs[HB])["complete_earlier_hours"] == "success", task_states(runs[HB])
    completion = task_result(runs[HB], "complete_earlier_hours")
    assert [c["hour"] for c in completion["completed"]] == [first[HA][0]["hour"]]
    _, open_at_first = _truth(HA)
    settled, deferred = _truth(HA, extension_hours=1)
    assert set(open_at_first) <= set(settled) and not deferred
    report = _report(s3, HA)
    assert report["window"]["extension_hours"] == 1
    assert report["status"] == "passed" and report["differences"] == []
    assert report["counts"]["deferred"] == 0
    assert report["counts"]["matched"] == report["totals"]["batch"]["sessions"] == len(settled)
    rows = {r["session_id"]: r for r in _batch_sessions(s3, HA)}
    assert rows == settled
    cut = {r["session_id"]: r for r in first[HA][1] if r["session_id"] in open_at_first}
    assert all(rows[sid]["event_count"] >= cut[sid]["event_count"] for sid in cut)
    assert any(rows[sid]["last_event_at"] > cut[sid]["last_event_at"] for sid in cut)
    assert _extra_of(HA)["counts"] == report["counts"]
    assert _partition(glue, HA)["Parameters"]["reconciliation_status"] == "passed"
    # a rerun of HA reads as far as its inputs are in (HB's horizon): the same files as the completion
    before = {key: _object(s3, key) for key in _hour_keys(HA)}
    rerun = _reconcile(HA)
    assert rerun.state == "success", task_states(rerun)
    assert {key: _object(s3, key) for key in _hour_keys(HA)} == before
    # and its own completion pass finds nothing to do: no hour before HA has sessions open at its horizon
    assert task_result(rerun, "complete_earlier_hours")["completed"] == []


def _hour_keys(hour: datetime) -> list[str]:
    cfg = settings()
    return [
        layout.batch_sessions_key(cfg, hour),
        layout.differences_key(cfg, hour),
        layout.report_key(cfg, hour),
    ]


def _object(s3, key: str) -> bytes:
    return s3.get_object(Bucket=settings().bucket, Key=key)["Body"].read()


def test_a_forced_stop_fails_alerts_and_the_repair_run_records_the_repair(lake, clean_hour, monkeypatch):
    make, inbox = lake
    s3, sqs = make("s3"), make("sqs")
    # H4's runs would also complete HB's open sessions, which the forced stop may have cost the stream too (sink
    # files not committed before it): that hour's own failure and alert, depending on the checkpoints' timing.
    # Completion is the HA/HB test's; this one is about H4 alone.
    monkeypatch.setenv("CLICKSTREAM_RECONCILE_COMPLETE_HOURS", "0")
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

"""The local Managed Flink running the real sessions job in PyFlink: Kinesis in, sessions in S3 out.

One application, three JVM starts: start, stop with a snapshot while sessions are still open, more events, start
from the snapshot, stop. The sessions in S3 must be exactly the sessions the reference sessionizer
(:mod:`localdev.reference`) computes from the same events — none lost and none twice — and the open
sessions must continue across the snapshot. A malformed record goes to the rejected sink and kills nothing.

Then: ``flink.config.0`` reaches the running job (or fails the start, naming the key), a stop whose savepoint
really fails leaves the application RUNNING with a FAILED operation and can be retried, and ``down`` kills the
job a companion killed with kill -9 left running.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.sessions.contract import SessionContract
from localdev import flink_runner as fr
from localdev.aws.endpoint import LocalEndpoint
from localdev.reference import check_records, sessionize
from tests.local_aws.support import (
    alive,
    companion_get,
    flink_rest,
    free_port_pair,
    list_keys,
    local_aws_cli,
    make_client,
    process_group,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.jvm]

APP = "sessions-app"
STREAM = "clicks"
BUCKET = "flink-lake"
ROLE = "arn:aws:iam::123456789012:role/flink"
GAP_S = 60
# Reading every sink file ten times a second (wait_for's default) takes CPU from the JVM it waits for.
S3_POLL_S = 1.0


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    ep = LocalEndpoint(free_port_pair(), tmp_path_factory.mktemp("kda-flink"))
    ep.start(timeout=60)
    try:
        yield ep
    finally:
        ep.stop()


@pytest.fixture(scope="module")
def aws(endpoint: LocalEndpoint) -> dict[str, Any]:
    return {name: make_client(endpoint.url, name) for name in ("kinesisanalyticsv2", "kinesis", "s3")}


class Clock:
    """Events in event-time order, starting 40 minutes ago (far enough back to leave room, never in the future)."""

    def __init__(self) -> None:
        self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
        self.serial = 0

    def event(
        self, user: int, second: float, client_event: str = "view_cart", device: str = "mobile"
    ) -> dict:
        self.serial += 1
        stamp = self.base + timedelta(seconds=second)
        return {
            "event_id": f"ev-{self.serial:05d}",
            "user_id": user,
            "device_id": device,
            "client_event": client_event,
            "client_timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "countrycode": "DE" if user % 2 else "BE",
        }


def put(aws: dict, events: list[dict | bytes], stream: str = STREAM) -> None:
    """Put in order, one batch after the other (arrival order = the list's order)."""
    for start in range(0, len(events), 100):
        batch = events[start : start + 100]
        aws["kinesis"].put_records(
            StreamName=stream,
            Records=[
                {
                    "Data": e if isinstance(e, bytes) else json.dumps(e).encode(),
                    "PartitionKey": f"p{start + i}",
                }
                for i, e in enumerate(batch)
            ],
        )


def rows(aws: dict, table: str, app: str = APP) -> list[dict]:
    out: list[dict] = []
    for key in list_keys(aws["s3"], BUCKET, f"{app}/{table}/"):
        name = key.rsplit("/", 1)[-1]
        assert not name.startswith("."), f"an uncommitted file reached S3: {key}"
        if name.startswith("_"):
            continue
        body = aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        out.extend(json.loads(line) for line in body.splitlines() if line.strip())
    return out


def wait_status(aws: dict, wanted: str, timeout: float, app: str = APP) -> dict:
    def check() -> dict | None:
        detail = aws["kinesisanalyticsv2"].describe_application(ApplicationName=app)["ApplicationDetail"]
        if detail["ApplicationStatus"] == "READY" and wanted != "READY":
            raise AssertionError(f"{app} fell back to READY: {detail.get('ApplicationDescription')}")
        return detail if detail["ApplicationStatus"] == wanted else None

    return wait_for(check, timeout, f"{app} to be {wanted}", interval=0.5)


def app_configuration(groups: dict[str, dict[str, str]]) -> dict:
    """A Flink app on the test code object with these property groups, 1 s checkpoints, snapshots on."""
    return {
        "ApplicationCodeConfiguration": {
            "CodeContent": {
                "S3ContentLocation": {"BucketARN": f"arn:aws:s3:::{BUCKET}", "FileKey": "code/flink-app.zip"}
            },
            "CodeContentType": "ZIPFILE",
        },
        "EnvironmentProperties": {
            "PropertyGroups": [{"PropertyGroupId": g, "PropertyMap": m} for g, m in groups.items()]
        },
        "FlinkApplicationConfiguration": {
            "CheckpointConfiguration": {"ConfigurationType": "CUSTOM", "CheckpointInterval": 1000}
        },
        "ApplicationSnapshotConfiguration": {"SnapshotsEnabled": True},
    }


def test_sessions_survive_a_snapshot_stop_and_restore(endpoint, aws):
    s3, kinesis, kda = aws["s3"], aws["kinesis"], aws["kinesisanalyticsv2"]
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/flink-app.zip", Body=b"PK\x05\x06" + b"\0" * 18)
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"]
    groups = {
        "consumer.config.0": {
            "stream.arn": arn,
            "aws.region": "us-east-1",
            "source.init.position": "TRIM_HORIZON",
        },
        "sink.config.0": {"output.path": f"s3://{BUCKET}/{APP}", "rollover.interval": "1 s"},
        "contract.config.0": {"gap.ms": str(GAP_S * 1000)},
    }
    kda.create_application(
        ApplicationName=APP,
        RuntimeEnvironment="FLINK-2_3",
        ServiceExecutionRole=ROLE,
        ApplicationConfiguration=app_configuration(groups),
    )

    clock = Clock()
    # Phase 1: users 1-12 browse in [0 s, 200 s] (two sessions each, split by a gap of 90 s); users 20-25
    # are still active at 560-590 s when a clock event at 600 s moves the watermark to 595 s: their sessions
    # are open (in Flink state) when the application stops.
    phase1: list[dict | bytes] = []
    for second in range(0, 201, 10):
        for user in range(1, 13):
            if not 60 < second < 150:
                phase1.append(clock.event(user, second + user / 10, "view_beer_list" if second else "login"))
    for second in range(560, 591, 10):
        for user in range(20, 26):
            phase1.append(clock.event(user, second + user / 10, "add_belgian_beer"))
    phase1.append(b"this is not JSON")
    phase1.append(clock.event(99, 600, "login", device="computer"))
    put(aws, phase1)

    kda.start_application(
        ApplicationName=APP,
        RunConfiguration={
            "ApplicationRestoreConfiguration": {"ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"}
        },
    )
    wait_status(aws, "RUNNING", 240)
    closed_phase1 = 12 * 2
    wait_for(
        lambda: len(rows(aws, "sessions")) >= closed_phase1,
        120,
        "the closed sessions of phase 1 in S3",
        interval=S3_POLL_S,
    )
    assert len(rows(aws, "rejected_events")) == 1 or wait_for(
        lambda: len(rows(aws, "rejected_events")) == 1,
        30,
        "the malformed record in the rejected sink",
        interval=S3_POLL_S,
    )

    kda.stop_application(ApplicationName=APP)
    wait_status(aws, "READY", 180)
    detail = kda.describe_application(ApplicationName=APP)["ApplicationDetail"]
    assert "FAILED" not in detail.get("ApplicationDescription", "")
    (snapshot,) = kda.list_application_snapshots(ApplicationName=APP)["SnapshotSummaries"]
    assert snapshot["SnapshotStatus"] == "READY"
    assert len(rows(aws, "sessions")) == closed_phase1  # the open sessions were not emitted by the stop

    # Phase 2 (put while stopped): users 20-25 continue within the gap, so their sessions span the snapshot;
    # a clock event far ahead closes everything but itself.
    phase2: list[dict | bytes] = []
    for second in range(620, 661, 10):
        for user in range(20, 26):
            phase2.append(clock.event(user, second + user / 10, "checkout"))
    for second in range(700, 731, 10):
        for user in range(1, 4):
            phase2.append(clock.event(user, second + user / 10, "login"))
    phase2.append(clock.event(99, 1200, "logout", device="computer"))
    put(aws, phase2)

    kda.start_application(ApplicationName=APP)  # the stored restore type: RESTORE_FROM_LATEST_SNAPSHOT
    wait_status(aws, "RUNNING", 240)
    contract = SessionContract(gap_ms=GAP_S * 1000)
    records = [e.decode() if isinstance(e, bytes) else json.dumps(e) for e in phase1 + phase2]
    expected = [
        s for s in sessionize(check_records(records, contract).events, contract) if s["user_id"] != 99
    ]  # user 99's last session (1200 s) is still open; its 600 s session closed in phase 2
    expected += [
        s for s in sessionize(check_records(records, contract).events, contract) if s["user_id"] == 99
    ][:1]
    wait_for(
        lambda: len(rows(aws, "sessions")) >= len(expected),
        120,
        f"{len(expected)} sessions in S3",
        interval=S3_POLL_S,
    )
    _, stats = companion_get(endpoint, f"/_companion/kinesisanalytics/{APP}")
    kda.stop_application(ApplicationName=APP)
    wait_status(aws, "READY", 180)

    got = rows(aws, "sessions")
    ids = Counter(s["session_id"] for s in got)
    assert [k for k, n in ids.items() if n > 1] == [], "a session was emitted twice"
    key = lambda s: (s["user_id"], s["device_id"], s["session_start"])  # noqa: E731
    assert sorted(({k: v for k, v in s.items() if k not in ("dt", "hr")} for s in got), key=key) == sorted(
        expected, key=key
    )
    spanning = [s for s in got if 20 <= s["user_id"] <= 25]
    assert spanning and all(s["event_count"] == 9 for s in spanning)  # 4 events before the snapshot + 5 after
    assert rows(aws, "late_events") == []
    assert stats["run"]["bridge"]["records_read"] == len(phase2)  # resumed after phase 1, nothing read twice


# -- flink.config.0, a stop whose snapshot fails, `down` after a kill -9 ---------------------------------------


def prepare(aws: dict, stream: str) -> str:
    """The bucket with the code object (once) and a new stream; returns the stream's ARN."""
    if BUCKET not in [b["Name"] for b in aws["s3"].list_buckets()["Buckets"]]:
        aws["s3"].create_bucket(Bucket=BUCKET)
        aws["s3"].put_object(Bucket=BUCKET, Key="code/flink-app.zip", Body=b"PK\x05\x06" + b"\0" * 18)
    aws["kinesis"].create_stream(StreamName=stream, ShardCount=1)
    return aws["kinesis"].describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]


def create(aws: dict, app: str, stream_arn: str, flink_config: dict[str, str] | None = None) -> None:
    groups = {
        "consumer.config.0": {"stream.arn": stream_arn, "aws.region": "us-east-1"},
        "sink.config.0": {"output.path": f"s3://{BUCKET}/{app}", "rollover.interval": "1 s"},
        "contract.config.0": {"gap.ms": str(GAP_S * 1000)},
    }
    if flink_config is not None:
        groups["flink.config.0"] = flink_config
    aws["kinesisanalyticsv2"].create_application(
        ApplicationName=app,
        RuntimeEnvironment="FLINK-2_3",
        ServiceExecutionRole=ROLE,
        ApplicationConfiguration=app_configuration(groups),
    )


def app_dir(endpoint: LocalEndpoint, app: str) -> Path:
    return endpoint.state_dir / "services" / "kinesisanalytics" / "apps" / f"us-east-1__{app}"


def running_job(endpoint: LocalEndpoint, app: str) -> dict:
    """The running job of ``app``: its runner's handle and status (with the job id and the JVM's PID)."""
    handle = json.loads((app_dir(endpoint, app) / "job.json").read_text())["handle"]
    status = json.loads((Path(handle["job_dir"]) / "status.json").read_text())
    return {**handle, "job_id": status["job_id"], "jvm_pid": status["jvm_pid"]}


def operation(aws: dict, app: str, op_id: str) -> dict:
    return aws["kinesisanalyticsv2"].describe_application_operation(ApplicationName=app, OperationId=op_id)[
        "ApplicationOperationInfoDetails"
    ]


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("parallelism.default", "4", "parallelism 1"),
        ("rest.bind-address", "0.0.0.0", "127.0.0.1"),
        ("table.exec.state.ttl", "1 h", "session contract"),
    ],
)
def test_a_flink_config_key_the_local_run_cannot_honour_fails_the_start(endpoint, aws, key, value, why):
    """Refused at start (no JVM is launched), as AWS accepts the groups at create and fails the start."""
    app = f"refused-{key.replace('.', '-')}"
    create(aws, app, prepare(aws, f"{app}-events"), {"table.exec.source.idle-timeout": "1 s", key: value})
    op_id = aws["kinesisanalyticsv2"].start_application(ApplicationName=app)["OperationId"]
    failed = wait_status(aws, "READY", 60, app=app)
    assert f"{key!r} = {value!r}" in failed["ApplicationDescription"], failed["ApplicationDescription"]
    assert why in failed["ApplicationDescription"]
    info = wait_for(
        lambda: (op := operation(aws, app, op_id))["OperationStatus"] != "IN_PROGRESS" and op, 30, "the start"
    )
    assert info["OperationStatus"] == "FAILED"
    assert f"{key!r} = {value!r}" in info["OperationFailureDetails"]["ErrorInfo"]["ErrorString"]
    assert not (app_dir(endpoint, app) / "runs").exists() or not list(
        (app_dir(endpoint, app) / "runs").glob("*/job")
    )


def test_flink_config_reaches_the_job_and_a_failed_snapshot_keeps_it_running(endpoint, aws):
    app, stream = "config-app", "config-clicks"
    kda = aws["kinesisanalyticsv2"]
    create(
        aws,
        app,
        prepare(aws, stream),
        {"pipeline.name": "config-app-sessions", "table.exec.source.idle-timeout": "2 s"},
    )
    clock = Clock()
    put(
        aws, [clock.event(1, 0, "login"), clock.event(1, 10), clock.event(99, 200, device="computer")], stream
    )
    kda.start_application(ApplicationName=app)
    wait_status(aws, "RUNNING", 240, app=app)
    job = running_job(endpoint, app)

    # flink.config.0 reached the job: the running job's own configuration, from the mini-cluster's REST API.
    config = {
        item["key"]: item["value"]
        for item in flink_rest(job["jvm_pid"], f"/jobs/{job['job_id']}/jobmanager/config")
    }
    assert config["pipeline.name"] == "config-app-sessions"
    assert config["table.exec.source.idle-timeout"] == "2 s"
    assert config["parallelism.default"] == "1"
    wait_for(lambda: len(rows(aws, "sessions", app)) == 1, 120, "user 1's session in S3", interval=S3_POLL_S)

    # A stop whose snapshot fails for real: Flink cannot create the savepoint directory (a file is in the way).
    blocker = app_dir(endpoint, app) / "savepoints"
    assert not blocker.exists()
    blocker.write_text("not a directory")
    op_id = kda.stop_application(ApplicationName=app)["OperationId"]
    info = wait_for(
        lambda: (op := operation(aws, app, op_id))["OperationStatus"] != "IN_PROGRESS" and op, 180, "the stop"
    )
    assert info["OperationStatus"] == "FAILED", info
    error = info["OperationFailureDetails"]["ErrorInfo"]["ErrorString"]
    assert "could not be taken" in error and "savepoint" in error and str(blocker) in error, error
    detail = kda.describe_application(ApplicationName=app)["ApplicationDetail"]
    assert detail["ApplicationStatus"] == "RUNNING"
    assert "FAILED" not in detail.get("ApplicationDescription", "")
    assert kda.list_application_snapshots(ApplicationName=app)["SnapshotSummaries"] == []
    assert running_job(endpoint, app) == job and alive(job["pid"]) and alive(job["jvm_pid"])  # the same job

    # ... which still processes new records (the bridge and the runner's spool feeder resumed).
    put(aws, [clock.event(2, 300, "login"), clock.event(99, 500, device="computer")], stream)
    wait_for(
        lambda: len(rows(aws, "sessions", app)) == 3,
        120,
        "the sessions of users 2 and 99 in S3",
        interval=S3_POLL_S,
    )

    # The cause gone, the same stop (not forced) works and takes its snapshot.
    blocker.unlink()
    kda.stop_application(ApplicationName=app)
    wait_status(aws, "READY", 180, app=app)
    (snapshot,) = kda.list_application_snapshots(ApplicationName=app)["SnapshotSummaries"]
    assert snapshot["SnapshotStatus"] == "READY"
    ops = kda.list_application_operations(ApplicationName=app)["ApplicationOperationInfoList"]
    assert [(o["Operation"], o["OperationStatus"]) for o in ops] == [
        ("StopApplication", "SUCCESSFUL"),
        ("StopApplication", "FAILED"),
        ("StartApplication", "SUCCESSFUL"),
    ]
    wait_for(lambda: not alive(job["pid"]) and not alive(job["jvm_pid"]), 30, "the job's processes to end")


def test_down_kills_the_flink_job_of_a_companion_killed_with_kill_9(tmp_path):
    port, state = free_port_pair(), tmp_path / "aws"
    up = local_aws_cli("up", "--port", str(port), "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    job: dict = {}
    leftover: list[int] = []
    try:
        url = up.stdout.strip()
        aws = {name: make_client(url, name) for name in ("kinesisanalyticsv2", "kinesis", "s3")}
        create(aws, "orphan-app", prepare(aws, "orphan-clicks"))
        aws["kinesisanalyticsv2"].start_application(ApplicationName="orphan-app")
        wait_status(aws, "RUNNING", 240, app="orphan-app")
        endpoint = LocalEndpoint.from_state_dir(state)
        job = running_job(endpoint, "orphan-app")
        assert set(process_group(job["pid"])) >= {job["pid"], job["jvm_pid"]}

        endpoint.kill_companion()  # kill -9: the job outlives it (a restarted companion would re-adopt it)
        time.sleep(1)
        assert alive(job["pid"]) and alive(job["jvm_pid"])
    finally:
        down = local_aws_cli("down", "--state-dir", str(state))
        if job:  # whatever happened, leave no JVM behind (only what the job directory vouches for)
            leftover = fr.kill_job(job["job_dir"])
    assert down.returncode == 0, down.stderr
    assert leftover == [], f"down left {leftover} running"
    assert str(job["pid"]) in down.stderr and str(job["jvm_pid"]) in down.stderr, down.stderr
    assert not alive(job["pid"]) and not alive(job["jvm_pid"])
    assert not (state / "companion.pid").exists() and not (state / "moto.pid").exists()

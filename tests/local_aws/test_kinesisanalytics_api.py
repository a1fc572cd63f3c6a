"""kinesisanalyticsv2 through boto3 and the amazon provider against a real local endpoint, with a fake job.

The job is :mod:`tests.local_aws.test_kinesisanalytics_support` (no JVM), so these tests cover the API, the
status machine, snapshots, the Kinesis → spool bridge, the output upload and companion restarts quickly; the
real PyFlink run is in ``test_kinesisanalytics_flink.py``.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.exceptions import AirflowException
from airflow.providers.amazon.aws.operators.kinesis_analytics import (
    KinesisAnalyticsV2StartApplicationOperator,
    KinesisAnalyticsV2StopApplicationOperator,
)
from airflow.providers.amazon.aws.sensors.kinesis_analytics import (
    KinesisAnalyticsV2StartApplicationCompletedSensor,
    KinesisAnalyticsV2StopApplicationCompletedSensor,
)
from botocore.exceptions import ClientError, WaiterError

from localdev import processes
from localdev.aws.endpoint import LocalEndpoint
from localdev.aws.flink.jobs import RUNNER_ENV
from tests.local_aws.support import companion_get, free_port_pair, list_keys, make_client, wait_for

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/flink"
BUCKET = "kda-lake"
CODE_KEY = "code/flink-app.zip"
CONN_ID = "kda_local"


@pytest.fixture(scope="module")
def kda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    """An endpoint whose companion runs applications with the fake job, and an Airflow connection to it."""
    saved = {k: os.environ.get(k) for k in (RUNNER_ENV, f"AIRFLOW_CONN_{CONN_ID.upper()}")}
    os.environ[RUNNER_ENV] = "tests.local_aws.test_kinesisanalytics_support:FakeJobRunner"
    ep = LocalEndpoint(free_port_pair(), tmp_path_factory.mktemp("kda-aws"))
    ep.start(timeout=60)
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": ep.url, "region_name": "us-east-1"},
        }
    )
    try:
        yield ep
    finally:
        ep.stop()
        # A test that failed between a kill -9 of the companion and its restart leaves its fake jobs behind.
        for pid in processes_under(ep.state_dir):
            os.kill(pid, signal.SIGKILL)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def aws(kda: LocalEndpoint) -> dict[str, Any]:
    clients = {name: make_client(kda.url, name) for name in ("kinesisanalyticsv2", "kinesis", "s3")}
    clients["s3"].create_bucket(Bucket=BUCKET)
    clients["s3"].put_object(Bucket=BUCKET, Key=CODE_KEY, Body=b"PK\x05\x06" + b"\0" * 18)
    return clients


def make_stream(aws: dict, name: str, shards: int = 2) -> str:
    aws["kinesis"].create_stream(StreamName=name, ShardCount=shards)
    return stream_arn(aws, name)


def stream_arn(aws: dict, name: str) -> str:
    return aws["kinesis"].describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


def put(aws: dict, stream: str, records: list[bytes]) -> None:
    for start in range(0, len(records), 200):
        batch = records[start : start + 200]
        aws["kinesis"].put_records(
            StreamName=stream,
            Records=[{"Data": data, "PartitionKey": f"k{start + i}"} for i, data in enumerate(batch)],
        )


def app_config(stream_arn: str, name: str, snapshots: bool = True, **overrides: dict) -> dict:
    groups = {
        "consumer.config.0": {
            "stream.arn": stream_arn,
            "aws.region": "us-east-1",
            "source.init.position": "TRIM_HORIZON",
        },
        "sink.config.0": {"output.path": f"s3://{BUCKET}/out/{name}", "rollover.interval": "1 s"},
        "contract.config.0": {"gap.ms": "60000"},
    }
    groups.update(overrides)
    return {
        "ApplicationCodeConfiguration": {
            "CodeContent": {
                "S3ContentLocation": {"BucketARN": f"arn:aws:s3:::{BUCKET}", "FileKey": CODE_KEY}
            },
            "CodeContentType": "ZIPFILE",
        },
        "EnvironmentProperties": {
            "PropertyGroups": [{"PropertyGroupId": g, "PropertyMap": m} for g, m in groups.items()]
        },
        "FlinkApplicationConfiguration": {
            "CheckpointConfiguration": {"ConfigurationType": "CUSTOM", "CheckpointInterval": 1000},
            "ParallelismConfiguration": {"ConfigurationType": "CUSTOM", "Parallelism": 1},
        },
        "ApplicationSnapshotConfiguration": {"SnapshotsEnabled": snapshots},
    }


def create_app(aws: dict, name: str, stream_arn: str, **kwargs: Any) -> dict:
    return aws["kinesisanalyticsv2"].create_application(
        ApplicationName=name,
        RuntimeEnvironment="FLINK-2_3",
        ServiceExecutionRole=ROLE,
        ApplicationConfiguration=app_config(stream_arn, name, **kwargs),
    )["ApplicationDetail"]


def detail(aws: dict, name: str) -> dict:
    return aws["kinesisanalyticsv2"].describe_application(ApplicationName=name)["ApplicationDetail"]


def status(aws: dict, name: str) -> str:
    return detail(aws, name)["ApplicationStatus"]


def wait_status(aws: dict, name: str, wanted: str, timeout: float = 30) -> dict:
    wait_for(lambda: status(aws, name) == wanted, timeout, f"{name} to be {wanted}", interval=0.1)
    return detail(aws, name)


def start_op(name: str, restore: str = "RESTORE_FROM_LATEST_SNAPSHOT", **extra: Any):
    restore_cfg = {"ApplicationRestoreType": restore, **extra}
    return KinesisAnalyticsV2StartApplicationOperator(
        task_id=f"start_{name}",
        aws_conn_id=CONN_ID,
        application_name=name,
        run_configuration={"ApplicationRestoreConfiguration": restore_cfg},
        wait_for_completion=True,
        waiter_delay=1,
        waiter_max_attempts=60,
    )


def stop_op(name: str, force: bool = False):
    return KinesisAnalyticsV2StopApplicationOperator(
        task_id=f"stop_{name}",
        aws_conn_id=CONN_ID,
        application_name=name,
        force=force,
        wait_for_completion=True,
        waiter_delay=1,
        waiter_max_attempts=60,
    )


def s3_lines(aws: dict, prefix: str) -> list[bytes]:
    lines: list[bytes] = []
    for key in list_keys(aws["s3"], BUCKET, prefix):
        assert "/." not in key and not key.rsplit("/", 1)[-1].startswith("."), (
            f"uncommitted file uploaded: {key}"
        )
        lines.extend(aws["s3"].get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines())
    return lines


def records(tag: str, n: int) -> list[bytes]:
    return [json.dumps({"event_id": f"{tag}-{i}", "n": i}).encode() for i in range(n)]


def start_with_records(aws: dict, name: str, stream: str, count: int, shards: int = 1) -> str:
    """A new stream with ``count`` records tagged "a", an application on it started and all of them read;
    returns the application's S3 output prefix."""
    create_app(aws, name, make_stream(aws, stream, shards))
    prefix = f"out/{name}/"
    put(aws, stream, records("a", count))
    start_op(name).execute({})
    wait_for(lambda: len(s3_lines(aws, prefix)) >= count, 30, f"{count} records in S3")
    return prefix


def app_dir(kda: LocalEndpoint, name: str) -> Path:
    return kda.state_dir / "services" / "kinesisanalytics" / "apps" / f"us-east-1__{name}"


def read_orders(kda: LocalEndpoint, name: str) -> list[list[str]]:
    """Per run, the spool files in the order the fake job read them."""
    runs = []
    for run in sorted((app_dir(kda, name) / "runs").iterdir()):
        reads = run / "reads.jsonl"
        runs.append(
            [json.loads(line)["file"] for line in reads.read_text().splitlines()] if reads.exists() else []
        )
    return runs


def error_code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


# -- API without running anything -------------------------------------------------------------------------


def test_create_describe_list_and_create_errors(aws):
    arn = make_stream(aws, "api-events")
    created = create_app(aws, "api-app", arn)
    assert created["ApplicationStatus"] == "READY"
    assert created["ApplicationVersionId"] == 1
    assert created["ApplicationARN"] == "arn:aws:kinesisanalytics:us-east-1:123456789012:application/api-app"
    config = detail(aws, "api-app")["ApplicationConfigurationDescription"]
    groups = config["EnvironmentPropertyDescriptions"]["PropertyGroupDescriptions"]
    assert {g["PropertyGroupId"] for g in groups} == {
        "consumer.config.0",
        "sink.config.0",
        "contract.config.0",
    }
    assert config["ApplicationSnapshotConfigurationDescription"] == {"SnapshotsEnabled": True}
    checkpoint = config["FlinkApplicationConfigurationDescription"]["CheckpointConfigurationDescription"]
    assert checkpoint["CheckpointInterval"] == 1000 and checkpoint["MinPauseBetweenCheckpoints"] == 5000
    restore = config["RunConfigurationDescription"]["ApplicationRestoreConfigurationDescription"]
    assert restore == {"ApplicationRestoreType": "RESTORE_FROM_LATEST_SNAPSHOT"}

    names = [
        s["ApplicationName"] for s in aws["kinesisanalyticsv2"].list_applications()["ApplicationSummaries"]
    ]
    assert "api-app" in names

    kda = aws["kinesisanalyticsv2"]
    with pytest.raises(ClientError) as exc:
        create_app(aws, "api-app", arn)
    assert error_code(exc) == "ResourceInUseException"
    with pytest.raises(ClientError) as exc:
        kda.create_application(
            ApplicationName="sql-app", RuntimeEnvironment="SQL-1_0", ServiceExecutionRole=ROLE
        )
    assert (
        error_code(exc) == "InvalidArgumentException" and "SQL-1_0" in exc.value.response["Error"]["Message"]
    )
    with pytest.raises(ClientError) as exc:
        kda.create_application(
            ApplicationName="no-code", RuntimeEnvironment="FLINK-2_3", ServiceExecutionRole=ROLE
        )
    assert "ApplicationCodeConfiguration" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        kda.create_application(
            ApplicationName="bad name", RuntimeEnvironment="FLINK-2_3", ServiceExecutionRole=ROLE
        )
    assert error_code(exc) == "ValidationException"
    bad = app_config(arn, "dup")
    bad["EnvironmentProperties"]["PropertyGroups"].append(bad["EnvironmentProperties"]["PropertyGroups"][0])
    with pytest.raises(ClientError) as exc:
        kda.create_application(
            ApplicationName="dup",
            RuntimeEnvironment="FLINK-2_3",
            ServiceExecutionRole=ROLE,
            ApplicationConfiguration=bad,
        )
    assert (
        error_code(exc) == "InvalidArgumentException"
        and "consumer.config.0" in exc.value.response["Error"]["Message"]
    )
    with pytest.raises(ClientError) as exc:
        kda.describe_application(ApplicationName="nope")
    assert error_code(exc) == "ResourceNotFoundException"


def test_update_checks_the_version_and_bumps_it(aws):
    arn = make_stream(aws, "upd-events", 1)
    create_app(aws, "upd-app", arn)
    kda = aws["kinesisanalyticsv2"]
    update = {
        "EnvironmentPropertyUpdates": {
            "PropertyGroups": [
                {
                    "PropertyGroupId": "consumer.config.0",
                    "PropertyMap": {"stream.arn": arn, "aws.region": "us-east-1"},
                },
                {
                    "PropertyGroupId": "sink.config.0",
                    "PropertyMap": {"output.path": f"s3://{BUCKET}/out/upd2"},
                },
            ]
        }
    }
    with pytest.raises(ClientError) as exc:
        kda.update_application(
            ApplicationName="upd-app", CurrentApplicationVersionId=7, ApplicationConfigurationUpdate=update
        )
    assert error_code(exc) == "ConcurrentModificationException"
    with pytest.raises(ClientError) as exc:
        kda.update_application(ApplicationName="upd-app", ApplicationConfigurationUpdate=update)
    assert error_code(exc) == "InvalidArgumentException"

    out = kda.update_application(
        ApplicationName="upd-app", CurrentApplicationVersionId=1, ApplicationConfigurationUpdate=update
    )
    assert out["ApplicationDetail"]["ApplicationVersionId"] == 2
    assert out["ApplicationDetail"]["ApplicationVersionUpdatedFrom"] == 1
    groups = out["ApplicationDetail"]["ApplicationConfigurationDescription"][
        "EnvironmentPropertyDescriptions"
    ]
    assert [g["PropertyGroupId"] for g in groups["PropertyGroupDescriptions"]] == [
        "consumer.config.0",
        "sink.config.0",
    ]
    op = kda.describe_application_operation(ApplicationName="upd-app", OperationId=out["OperationId"])
    assert op["ApplicationOperationInfoDetails"]["OperationStatus"] == "SUCCESSFUL"
    assert op["ApplicationOperationInfoDetails"]["ApplicationVersionChangeDetails"] == {
        "ApplicationVersionUpdatedFrom": 1,
        "ApplicationVersionUpdatedTo": 2,
    }

    token = detail(aws, "upd-app")["ConditionalToken"]
    kda.update_application(
        ApplicationName="upd-app",
        ConditionalToken=token,
        ApplicationConfigurationUpdate={
            "ApplicationSnapshotConfigurationUpdate": {"SnapshotsEnabledUpdate": False}
        },
    )
    after = detail(aws, "upd-app")
    assert after["ApplicationVersionId"] == 3
    assert after["ApplicationConfigurationDescription"]["ApplicationSnapshotConfigurationDescription"] == {
        "SnapshotsEnabled": False
    }
    with pytest.raises(ClientError) as exc:  # the token of version 2 is stale now
        kda.update_application(
            ApplicationName="upd-app", ConditionalToken=token, ServiceExecutionRoleUpdate=ROLE
        )
    assert error_code(exc) == "ConcurrentModificationException"


def test_tags_and_delete(aws):
    arn = make_stream(aws, "del-events", 1)
    app = create_app(aws, "del-app", arn)
    kda = aws["kinesisanalyticsv2"]
    kda.tag_resource(ResourceARN=app["ApplicationARN"], Tags=[{"Key": "team", "Value": "data"}])
    assert kda.list_tags_for_resource(ResourceARN=app["ApplicationARN"])["Tags"] == [
        {"Key": "team", "Value": "data"}
    ]
    kda.untag_resource(ResourceARN=app["ApplicationARN"], TagKeys=["team"])
    assert kda.list_tags_for_resource(ResourceARN=app["ApplicationARN"])["Tags"] == []

    with pytest.raises(ClientError) as exc:
        kda.delete_application(
            ApplicationName="del-app", CreateTimestamp=app["CreateTimestamp"].replace(year=2020)
        )
    assert error_code(exc) == "InvalidArgumentException"
    kda.delete_application(ApplicationName="del-app", CreateTimestamp=app["CreateTimestamp"])
    wait_for(
        lambda: (
            "del-app" not in [s["ApplicationName"] for s in kda.list_applications()["ApplicationSummaries"]]
        ),
        10,
        "del-app to disappear",
    )
    with pytest.raises(ClientError) as exc:
        kda.describe_application(ApplicationName="del-app")
    assert error_code(exc) == "ResourceNotFoundException"


# -- runs -------------------------------------------------------------------------------------------------


def test_stop_with_snapshot_and_restore_lose_and_repeat_nothing(kda, aws):
    name = "run-app"
    arn = make_stream(aws, "run-events", 2)
    create_app(aws, name, arn)
    kinesis_stream = "run-events"
    put(aws, kinesis_stream, records("a", 300))

    start_op(name).execute({})  # the provider's operator, waiting with its own waiter
    assert status(aws, name) == "RUNNING"
    prefix = f"out/{name}/"
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 300, 30, "the first 300 records in S3")
    put(aws, kinesis_stream, records("b", 200))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 500, 30, "500 records in S3")

    stop_op(name).execute({})
    assert status(aws, name) == "READY"
    snaps = aws["kinesisanalyticsv2"].list_application_snapshots(ApplicationName=name)["SnapshotSummaries"]
    assert len(snaps) == 1
    assert snaps[0]["SnapshotName"].startswith("AutoSnapshot-")
    assert snaps[0]["SnapshotStatus"] == "READY" and snaps[0]["ApplicationVersionId"] == 1
    assert snaps[0]["RuntimeEnvironment"] == "FLINK-2_3"

    put(aws, kinesis_stream, records("c", 250))  # arrives while the application is stopped
    start_op(name).execute({})
    put(aws, kinesis_stream, records("d", 100))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 850, 30, "850 records in S3")
    stop_op(name).execute({})

    seen = Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix))
    expected = {f"{tag}-{i}" for tag, n in (("a", 300), ("b", 200), ("c", 250), ("d", 100)) for i in range(n)}
    assert set(seen) == expected
    assert [k for k, v in seen.items() if v > 1] == []
    for order in read_orders(kda, name):  # every file read alone, in publication order
        assert order == sorted(order)
    ops = aws["kinesisanalyticsv2"].list_application_operations(ApplicationName=name)[
        "ApplicationOperationInfoList"
    ]
    assert [o["Operation"] for o in ops][:4] == ["StopApplication", "StartApplication"] * 2
    assert {o["OperationStatus"] for o in ops} == {"SUCCESSFUL"}


def test_force_stop_takes_no_snapshot_and_start_errors(aws):
    name = "force-app"
    arn = make_stream(aws, "force-events", 1)
    create_app(aws, name, arn)
    kda = aws["kinesisanalyticsv2"]
    with pytest.raises(ClientError) as exc:
        kda.stop_application(ApplicationName=name)
    assert error_code(exc) == "ResourceInUseException"
    with pytest.raises(ClientError) as exc:
        kda.create_application_snapshot(ApplicationName=name, SnapshotName="early")
    assert error_code(exc) == "ResourceInUseException"

    kda.start_application(ApplicationName=name, RunConfiguration={})
    assert status(aws, name) in ("STARTING", "RUNNING")
    with pytest.raises(ClientError) as exc:
        kda.start_application(ApplicationName=name)
    assert error_code(exc) == "ResourceInUseException"
    wait_status(aws, name, "RUNNING")

    stop_op(name, force=True).execute({})
    assert status(aws, name) == "READY"
    assert kda.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"] == []
    with pytest.raises(ClientError) as exc:
        kda.start_application(
            ApplicationName=name,
            RunConfiguration={
                "ApplicationRestoreConfiguration": {
                    "ApplicationRestoreType": "RESTORE_FROM_CUSTOM_SNAPSHOT",
                    "SnapshotName": "missing",
                }
            },
        )
    assert error_code(exc) == "ResourceNotFoundException"


def test_manual_snapshot_custom_restore_and_snapshot_delete(kda, aws):
    name = "snap-app"
    stream = "snap-events"
    prefix = start_with_records(aws, name, stream, 100)
    kdav2 = aws["kinesisanalyticsv2"]

    kdav2.create_application_snapshot(ApplicationName=name, SnapshotName="manual-1")
    wait_for(
        lambda: (
            kdav2.describe_application_snapshot(ApplicationName=name, SnapshotName="manual-1")[
                "SnapshotDetails"
            ]["SnapshotStatus"]
            == "READY"
        ),
        30,
        "manual-1 READY",
    )
    with pytest.raises(ClientError) as exc:
        kdav2.create_application_snapshot(ApplicationName=name, SnapshotName="manual-1")
    assert error_code(exc) == "InvalidArgumentException"
    put(aws, stream, records("b", 100))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 200, 30, "200 records")
    stop_op(name).execute({})

    # Back to manual-1: the files read after it are parked and "b" is read again from Kinesis, as AWS would.
    start_op(name, "RESTORE_FROM_CUSTOM_SNAPSHOT", SnapshotName="manual-1").execute({})
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 300, 30, "b read again")
    stop_op(name).execute({})
    seen = Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix))
    assert all(seen[f"a-{i}"] == 1 for i in range(100))
    assert all(seen[f"b-{i}"] == 2 for i in range(100))
    for order in read_orders(kda, name):
        assert order == sorted(order)

    snaps = kdav2.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"]
    assert [s["SnapshotName"] for s in snaps][0] == "manual-1" and len(snaps) == 3
    manual = kdav2.describe_application_snapshot(ApplicationName=name, SnapshotName="manual-1")[
        "SnapshotDetails"
    ]
    with pytest.raises(ClientError) as exc:
        kdav2.delete_application_snapshot(
            ApplicationName=name,
            SnapshotName="manual-1",
            SnapshotCreationTimestamp=manual["SnapshotCreationTimestamp"].replace(year=2020),
        )
    assert error_code(exc) == "InvalidArgumentException"
    kdav2.delete_application_snapshot(
        ApplicationName=name,
        SnapshotName="manual-1",
        SnapshotCreationTimestamp=manual["SnapshotCreationTimestamp"],
    )
    with pytest.raises(ClientError) as exc:
        kdav2.describe_application_snapshot(ApplicationName=name, SnapshotName="manual-1")
    assert error_code(exc) == "ResourceNotFoundException"


def test_snapshots_disabled(aws):
    name = "nosnap-app"
    arn = make_stream(aws, "nosnap-events", 1)
    create_app(aws, name, arn, snapshots=False)
    kda = aws["kinesisanalyticsv2"]
    kda.start_application(ApplicationName=name)
    wait_status(aws, name, "RUNNING")
    with pytest.raises(ClientError) as exc:
        kda.create_application_snapshot(ApplicationName=name, SnapshotName="s1")
    assert error_code(exc) == "InvalidApplicationConfigurationException"
    kda.stop_application(ApplicationName=name)
    wait_status(aws, name, "READY")
    assert kda.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"] == []


def operation(aws: dict, name: str, op_id: str) -> dict:
    return aws["kinesisanalyticsv2"].describe_application_operation(ApplicationName=name, OperationId=op_id)[
        "ApplicationOperationInfoDetails"
    ]


def test_a_stop_whose_snapshot_fails_keeps_the_application_running(kda, aws):
    """As on AWS: the StopApplication operation fails with the reason, the application runs on, stops can retry."""
    name = "stuck-snapshot-app"
    stream = "stuck-snapshot-events"
    prefix = start_with_records(aws, name, stream, 50)
    (pid,) = job_processes(kda, name)
    # A real failure: the snapshot's directory cannot be created (a file is where its parent must be).
    blocker = app_dir(kda, name) / "savepoints"
    assert not blocker.exists()
    blocker.write_text("not a directory")

    kdav2 = aws["kinesisanalyticsv2"]
    for attempt in range(2):  # a retried stop fails the same way while the cause remains
        op_id = kdav2.stop_application(ApplicationName=name)["OperationId"]
        info = wait_for(
            lambda op_id=op_id: (
                (op := operation(aws, name, op_id))["OperationStatus"] != "IN_PROGRESS" and op
            ),
            30,
            "the stop to end",
        )
        assert info["OperationStatus"] == "FAILED", info
        error = info["OperationFailureDetails"]["ErrorInfo"]["ErrorString"]
        assert "could not be taken" in error and str(blocker) in error, error
        app = detail(aws, name)
        assert app["ApplicationStatus"] == "RUNNING"
        assert "FAILED" not in app.get("ApplicationDescription", "")  # the run did not fail, the stop did
        assert kdav2.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"] == []
        assert job_processes(kda, name) == [pid]  # the same job runs on ...
        put(aws, stream, records(f"b{attempt}", 50))  # ... and still gets new records
        wait_for(lambda n=100 + 50 * attempt: len(s3_lines(aws, prefix)) >= n, 30, "records after the stop")

    stop_op(name, force=True).execute({})  # a forced stop takes no snapshot, so it works
    assert status(aws, name) == "READY" and job_processes(kda, name) == []
    ops = kdav2.list_application_operations(ApplicationName=name)["ApplicationOperationInfoList"]
    assert [(o["Operation"], o["OperationStatus"]) for o in ops] == [
        ("StopApplication", "SUCCESSFUL"),
        ("StopApplication", "FAILED"),
        ("StopApplication", "FAILED"),
        ("StartApplication", "SUCCESSFUL"),
    ]
    seen = Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix))
    assert len(seen) == 150 and max(seen.values()) == 1


def test_a_snapshot_that_fails_is_marked_failed_and_the_job_runs_on(kda, aws):
    """CreateApplicationSnapshot that cannot be written: the snapshot and its operation are FAILED with the reason,
    the same job keeps running and reading, and a later snapshot (cause removed) works and restores."""
    name = "failing-snapshot-app"
    stream = "failing-snapshot-events"
    prefix = start_with_records(aws, name, stream, 50)
    kdav2 = aws["kinesisanalyticsv2"]
    (pid,) = job_processes(kda, name)
    blocker = app_dir(kda, name) / "savepoints"  # a real failure: a file where the snapshot's directory goes
    assert not blocker.exists()
    blocker.write_text("not a directory")

    kdav2.create_application_snapshot(ApplicationName=name, SnapshotName="blocked")

    def snapshot_status(snapshot: str) -> str:
        details = kdav2.describe_application_snapshot(ApplicationName=name, SnapshotName=snapshot)
        return details["SnapshotDetails"]["SnapshotStatus"]

    wait_for(lambda: snapshot_status("blocked") != "CREATING", 30, "the snapshot to end")
    assert snapshot_status("blocked") == "FAILED"
    ops = kdav2.list_application_operations(ApplicationName=name)["ApplicationOperationInfoList"]
    (failed,) = [o for o in ops if o["Operation"] == "CreateApplicationSnapshot"]
    info = operation(aws, name, failed["OperationId"])
    assert info["OperationStatus"] == "FAILED", info
    assert str(blocker) in info["OperationFailureDetails"]["ErrorInfo"]["ErrorString"], info
    assert status(aws, name) == "RUNNING" and job_processes(kda, name) == [pid]
    put(aws, stream, records("b", 50))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 100, 30, "records after the failed snapshot")

    blocker.unlink()
    kdav2.create_application_snapshot(ApplicationName=name, SnapshotName="after-fix")
    wait_for(lambda: snapshot_status("after-fix") == "READY", 30, "after-fix READY")
    put(aws, stream, records("c", 50))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 150, 30, "records after the good snapshot")
    stop_op(name, force=True).execute({})
    start_op(name, "RESTORE_FROM_CUSTOM_SNAPSHOT", SnapshotName="after-fix").execute({})
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 200, 30, "c read again after the restore")
    stop_op(name, force=True).execute({})
    seen = Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix))
    assert all(seen[f"a-{i}"] == 1 and seen[f"b-{i}"] == 1 and seen[f"c-{i}"] == 2 for i in range(50)), seen


# -- failures are visible, never a hang ---------------------------------------------------------------------


def test_crashing_job_fails_the_start_sensor_with_the_reason(kda, aws):
    name = "crash-app"
    stream = "crash-events"
    arn = make_stream(aws, stream, 1)
    create_app(aws, name, arn)
    kdav2 = aws["kinesisanalyticsv2"]
    op_id = kdav2.start_application(ApplicationName=name)["OperationId"]
    wait_status(aws, name, "RUNNING")
    sensor = KinesisAnalyticsV2StartApplicationCompletedSensor(
        task_id="wait_running", aws_conn_id=CONN_ID, application_name=name
    )
    assert sensor.poke({}) is True

    put(aws, stream, [b'{"event_id": "CRASH-1"}'])
    failed = wait_status(aws, name, "READY")
    assert "poison record" in failed["ApplicationDescription"]
    assert "CRASH-1" in failed["ApplicationDescription"]
    with pytest.raises(AirflowException):
        sensor.poke({})
    start = kdav2.describe_application_operation(ApplicationName=name, OperationId=op_id)
    assert start["ApplicationOperationInfoDetails"]["OperationStatus"] == "SUCCESSFUL"  # it did start
    _, stats = companion_get(kda, f"/_companion/kinesisanalytics/{name}")
    assert "CRASH-1" in stats["failure"]["reason"]
    assert KinesisAnalyticsV2StopApplicationCompletedSensor(
        task_id="wait_stopped", aws_conn_id=CONN_ID, application_name=name
    ).poke({})


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-stream", "nope-stream"),
        ("missing-code", "cannot be read"),
        ("bad-property", "unknown properties"),
        ("missing-bucket", "no-such-bucket"),
    ],
)
def test_a_start_that_cannot_run_fails_the_waiter_fast(aws, case, needle):
    name = f"bad-{case}"
    arn = make_stream(aws, f"{name}-events", 1)
    create_app(aws, name, arn)
    kda = aws["kinesisanalyticsv2"]
    groups = {
        "consumer.config.0": {"stream.arn": arn, "aws.region": "us-east-1"},
        "sink.config.0": {"output.path": f"s3://{BUCKET}/out/{name}"},
    }
    code_update = None
    if case == "missing-stream":
        groups["consumer.config.0"]["stream.arn"] = (
            "arn:aws:kinesis:us-east-1:123456789012:stream/nope-stream"
        )
    elif case == "bad-property":
        groups["sink.config.0"]["colour"] = "blue"
    elif case == "missing-bucket":
        groups["sink.config.0"]["output.path"] = "s3://no-such-bucket/x"
    else:
        code_update = {
            "CodeContentUpdate": {"S3ContentLocationUpdate": {"FileKeyUpdate": "code/missing.zip"}}
        }
    update: dict[str, Any] = {
        "EnvironmentPropertyUpdates": {
            "PropertyGroups": [{"PropertyGroupId": g, "PropertyMap": m} for g, m in groups.items()]
        }
    }
    if code_update:
        update["ApplicationCodeConfigurationUpdate"] = code_update
    kda.update_application(
        ApplicationName=name, CurrentApplicationVersionId=1, ApplicationConfigurationUpdate=update
    )

    with pytest.raises(WaiterError, match="READY"):
        start_op(name).execute({})  # the waiter sees READY, a failure state, and gives up at once
    failed = detail(aws, name)
    assert failed["ApplicationStatus"] == "READY"
    assert needle in failed["ApplicationDescription"]
    ops = kda.list_application_operations(ApplicationName=name, Operation="StartApplication")
    (op,) = ops["ApplicationOperationInfoList"]
    assert op["OperationStatus"] == "FAILED"
    info = kda.describe_application_operation(ApplicationName=name, OperationId=op["OperationId"])
    assert (
        needle
        in info["ApplicationOperationInfoDetails"]["OperationFailureDetails"]["ErrorInfo"]["ErrorString"]
    )


def test_provider_hook_waiter_fails_on_a_crashed_start(aws):
    """The hook's own waiter (application_start_complete) ends in failure instead of waiting 150 minutes."""
    from airflow.providers.amazon.aws.hooks.kinesis_analytics import KinesisAnalyticsV2Hook

    name = "waiter-app"
    arn = make_stream(aws, "waiter-events", 1)
    create_app(aws, name, arn, **{"sink.config.0": {"output.path": "s3://no-such-bucket/x"}})
    hook = KinesisAnalyticsV2Hook(aws_conn_id=CONN_ID)
    hook.conn.start_application(ApplicationName=name)
    with pytest.raises(WaiterError) as exc:
        hook.get_waiter("application_start_complete").wait(
            ApplicationName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )
    assert "READY" in str(exc.value)


# -- the companion restarts while an application runs -------------------------------------------------------


def test_companion_restart_and_crash_keep_the_application_running(kda, aws):
    name = "restart-app"
    stream = "restart-events"
    prefix = start_with_records(aws, name, stream, 200, shards=2)
    arn = stream_arn(aws, stream)

    kda.restart_companion()  # SIGTERM: the job is suspended with a savepoint and resumed
    assert status(aws, name) == "RUNNING"
    put(aws, stream, records("b", 200))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 400, 60, "400 records after a restart")

    kda.kill_companion()  # kill -9: the job outlives the companion and is re-adopted
    put({"kinesis": make_client(kda.moto_url, "kinesis")}, stream, records("c", 200))  # the gateway is down
    kda.restart_companion()
    assert status(aws, name) == "RUNNING"
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 600, 60, "600 records after a crash")
    _, stats = companion_get(kda, f"/_companion/kinesisanalytics/{name}")
    assert stats["run"]["bridge"]["stream_arn"] == arn
    stop_op(name).execute({})

    seen = Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix))
    expected = {f"{tag}-{i}" for tag in "abc" for i in range(200)}
    assert set(seen) == expected
    assert [k for k, v in seen.items() if v > 1] == []


def processes_under(directory: Path) -> list[int]:
    """PIDs of live processes whose command line names ``directory`` (the fake jobs started under it)."""
    found = []
    for pid in processes.all_pids():
        cmd = " ".join(processes.cmdline(pid) or ())
        if str(directory) in cmd and "localdev.aws" not in cmd:
            found.append(pid)
    return found


def job_processes(kda: LocalEndpoint, name: str) -> list[int]:
    """PIDs of fake jobs still running for application ``name``."""
    return processes_under(app_dir(kda, name))


def test_update_while_running_restarts_from_an_automatic_snapshot(kda, aws):
    name = "hot-app"
    stream = "hot-events"
    prefix = start_with_records(aws, name, stream, 100)
    arn = stream_arn(aws, stream)

    kdav2 = aws["kinesisanalyticsv2"]
    out = kdav2.update_application(
        ApplicationName=name,
        CurrentApplicationVersionId=1,
        ApplicationConfigurationUpdate={
            "EnvironmentPropertyUpdates": {
                "PropertyGroups": [
                    {"PropertyGroupId": g, "PropertyMap": m}
                    for g, m in {
                        "consumer.config.0": {"stream.arn": arn, "aws.region": "us-east-1"},
                        "sink.config.0": {
                            "output.path": f"s3://{BUCKET}/out/{name}",
                            "rollover.interval": "1 s",
                        },
                        "contract.config.0": {"gap.ms": "30000"},
                    }.items()
                ]
            }
        },
    )
    assert out["ApplicationDetail"]["ApplicationStatus"] == "UPDATING"
    assert out["ApplicationDetail"]["ApplicationVersionId"] == 2
    KinesisAnalyticsV2StartApplicationCompletedSensor(
        task_id="wait", aws_conn_id=CONN_ID, application_name=name, poke_interval=0.2
    ).execute({})
    (snap,) = kdav2.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"]
    assert snap["SnapshotName"].startswith("AutoSnapshot-") and snap["ApplicationVersionId"] == 1
    op = kdav2.describe_application_operation(ApplicationName=name, OperationId=out["OperationId"])
    assert op["ApplicationOperationInfoDetails"]["OperationStatus"] == "SUCCESSFUL"
    request = json.loads(sorted((app_dir(kda, name) / "runs").glob("*/request.json"))[-1].read_text())
    assert request["groups"]["contract.config.0"] == {"gap.ms": "30000"}  # the new version runs

    put(aws, stream, records("b", 100))
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 200, 30, "200 records")
    stop_op(name).execute({})
    seen = Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix))
    assert set(seen) == {f"{t}-{i}" for t in "ab" for i in range(100)} and max(seen.values()) == 1


# -- a snapshot of an older job graph (the job's SQL changed since it was taken) ----------------------------


def new_job_graph(aws: dict, name: str, arn: str, graph: str) -> dict:
    """UpdateApplication as a changed SQL query does it: the fake job's graph is another one."""
    groups = app_config(arn, name, **{"flink.config.0": {"fake.job-graph": graph}})["EnvironmentProperties"]
    return aws["kinesisanalyticsv2"].update_application(
        ApplicationName=name,
        CurrentApplicationVersionId=detail(aws, name)["ApplicationVersionId"],
        ApplicationConfigurationUpdate={"EnvironmentPropertyUpdates": groups},
    )


def failure_of(aws: dict, name: str, operation_id: str) -> tuple[dict, str]:
    info = aws["kinesisanalyticsv2"].describe_application_operation(
        ApplicationName=name, OperationId=operation_id
    )["ApplicationOperationInfoDetails"]
    assert info["OperationStatus"] == "FAILED", info
    return info, info["OperationFailureDetails"]["ErrorInfo"]["ErrorString"]


def snapshots_of(aws: dict, name: str) -> list[dict]:
    return aws["kinesisanalyticsv2"].list_application_snapshots(ApplicationName=name)["SnapshotSummaries"]


def test_a_snapshot_of_an_older_job_graph_fails_the_start_naming_it_and_the_way_out(aws):
    """As on AWS (without system rollback): the start fails, the application is READY again and the failed
    operation's ErrorString says why; here it names the snapshot, its version and how to start without it."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.exceptions import AirflowFailException

    from include.flink_lifecycle import explain_start_failure
    from localdev.airflow_env import REPO

    name, stream = "graph-app", "graph-events"
    arn = make_stream(aws, stream, 1)
    create_app(aws, name, arn, **{"flink.config.0": {"fake.job-graph": "1"}})
    prefix = f"out/{name}/"
    put(aws, stream, records("a", 20))
    start_op(name).execute({})
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 20, 30, "20 records in S3")
    stop_op(name).execute({})
    (snap,) = snapshots_of(aws, name)
    assert snap["ApplicationVersionId"] == 1

    new_job_graph(aws, name, arn, "2")
    kdav2 = aws["kinesisanalyticsv2"]
    op_id = kdav2.start_application(ApplicationName=name)["OperationId"]
    app = wait_status(aws, name, "READY")
    info, error = failure_of(aws, name, op_id)
    assert error.startswith(
        f"the job could not restore snapshot {snap['SnapshotName']} (taken by application version 1, the "
        "application is now version 2): the snapshot belongs to an older job graph"
    )
    assert "Start with ApplicationRestoreType SKIP_RESTORE_FROM_SNAPSHOT" in error
    assert error.endswith(
        "Flink: Cannot map checkpoint/savepoint state for operator 0a448493b4782967b150582570326227 to the new "
        "program, because the operator is not available in the new program. If you want to allow to skip this, "
        "you can set the --allowNonRestoredState option on the CLI."
    )
    assert "belongs to an older job graph" in app["ApplicationDescription"]

    # The lifecycle DAG's failure, from these very answers: the snapshot, the DAG param, the consequence.
    message = explain_start_failure(app, info, snapshots_of(aws, name))
    assert message.startswith(
        f"graph-app cannot restore snapshot {snap['SnapshotName']} (taken by application version 1; the "
        "application is now version 2): the snapshot belongs to an older job graph"
    )
    assert "restore=SKIP_RESTORE_FROM_SNAPSHOT" in message
    assert "the source (TRIM_HORIZON) re-reads the stream's whole retention" in message
    assert message.endswith(
        "Flink: " + error.split("Flink: ", 1)[1]
    )  # Flink's words once, not the reason twice
    bag = DagBag(dag_folder=str(REPO / "dags" / "clickstream_flink_lifecycle.py"))
    sensor_class = type(bag.dags["clickstream_flink_lifecycle"].get_task("wait_until_running"))
    sensor = sensor_class(task_id="wait", aws_conn_id=CONN_ID, application_name=name)
    with pytest.raises(AirflowFailException) as failed:
        sensor.poke({})
    assert str(failed.value) == message

    # The way out: start without the snapshot; the source re-reads the stream (TRIM_HORIZON).
    start_op(name, restore="SKIP_RESTORE_FROM_SNAPSHOT").execute({})
    wait_for(lambda: len(s3_lines(aws, prefix)) >= 40, 30, "the 20 records read again")
    assert Counter(json.loads(line)["event_id"] for line in s3_lines(aws, prefix)) == {
        f"a-{i}": 2 for i in range(20)
    }

    # An update of the running job to yet another graph: stop with a snapshot, restart from it, fail.
    out = new_job_graph(aws, name, arn, "3")
    assert out["ApplicationDetail"]["ApplicationStatus"] == "UPDATING"
    wait_status(aws, name, "READY")
    _, error = failure_of(aws, name, out["OperationId"])
    latest = max(snapshots_of(aws, name), key=lambda s: s["SnapshotCreationTimestamp"])
    assert latest["ApplicationVersionId"] == 2
    assert error.startswith(
        f"the job could not restore snapshot {latest['SnapshotName']} (taken by application version 2, the "
        "application is now version 3): the snapshot belongs to an older job graph"
    )


def test_force_stop_while_starting_and_delete_while_running(kda, aws):
    name = "slow-app"
    arn = make_stream(aws, "slow-events", 1)
    create_app(aws, name, arn, **{"flink.config.0": {"fake.startup-delay-ms": "4000"}})
    kdav2 = aws["kinesisanalyticsv2"]
    op_id = kdav2.start_application(ApplicationName=name)["OperationId"]
    wait_for(lambda: job_processes(kda, name), 10, "the job process")
    assert status(aws, name) == "STARTING"
    with pytest.raises(ClientError) as exc:
        kdav2.stop_application(ApplicationName=name, Force=False)  # only RUNNING stops gracefully
    assert error_code(exc) == "ResourceInUseException"
    kdav2.stop_application(ApplicationName=name, Force=True)
    assert status(aws, name) in ("FORCE_STOPPING", "READY")
    wait_status(aws, name, "READY")
    assert job_processes(kda, name) == []
    start = kdav2.describe_application_operation(ApplicationName=name, OperationId=op_id)
    assert start["ApplicationOperationInfoDetails"]["OperationStatus"] == "FAILED"

    kdav2.start_application(ApplicationName=name)
    wait_status(aws, name, "RUNNING")
    created = detail(aws, name)["CreateTimestamp"]
    kdav2.delete_application(ApplicationName=name, CreateTimestamp=created)
    assert status(aws, name) == "DELETING"
    wait_for(
        lambda: name not in [s["ApplicationName"] for s in kdav2.list_applications()["ApplicationSummaries"]],
        30,
        f"{name} to be deleted",
    )
    assert job_processes(kda, name) == []
    assert not app_dir(kda, name).exists()


def test_a_forced_stop_overtaking_a_snapshot_stop_succeeds_and_the_snapshot_stop_fails(kda, aws):
    name = "slow-snapshot-app"
    arn = make_stream(aws, "slow-snapshot-events", 1)
    create_app(aws, name, arn, **{"flink.config.0": {"fake.savepoint-delay-ms": "5000"}})
    kdav2 = aws["kinesisanalyticsv2"]
    kdav2.start_application(ApplicationName=name)
    wait_status(aws, name, "RUNNING")
    graceful = kdav2.stop_application(ApplicationName=name)["OperationId"]
    assert status(aws, name) == "STOPPING"
    forced = kdav2.stop_application(ApplicationName=name, Force=True)["OperationId"]
    assert status(aws, name) == "FORCE_STOPPING"
    wait_status(aws, name, "READY")

    def op(op_id: str) -> dict:
        detail = kdav2.describe_application_operation(ApplicationName=name, OperationId=op_id)
        return detail["ApplicationOperationInfoDetails"]

    assert op(forced)["OperationStatus"] == "SUCCESSFUL"
    assert op(graceful)["OperationStatus"] == "FAILED"
    assert "forced stop" in op(graceful)["OperationFailureDetails"]["ErrorInfo"]["ErrorString"]
    detail = kdav2.describe_application(ApplicationName=name)["ApplicationDetail"]
    assert "fail" not in detail.get("ApplicationDescription", "").lower(), detail.get(
        "ApplicationDescription"
    )
    assert kdav2.list_application_snapshots(ApplicationName=name)["SnapshotSummaries"] == []
    assert job_processes(kda, name) == []

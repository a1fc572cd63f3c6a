"""``clickstream_teardown`` on an endpoint of its own whose Flink applications run a fake job (no JVM): a RUNNING
application is stopped and deleted, a failed deletion fails the run through the watcher while the all_done
deletions still run, ``keep_data_lake`` keeps the lake's data, and buckets with object versions, delete
markers and unfinished multipart uploads are emptied and deleted.
"""

from __future__ import annotations

import os

import pytest

from include.aws import client
from include.config import settings
from include.provision.teardown import empty_and_delete_bucket
from localdev.airflow_env import run_dag, task_result, task_states
from tests.integration.system import leftover_resources, teardown_conf

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(airflow_db, tmp_path_factory):
    from localdev import airflow_env as local_airflow
    from localdev.aws import LocalEndpoint
    from localdev.aws.flink.jobs import RUNNER_ENV
    from tests.local_aws.support import free_port_pair

    saved = {k: os.environ.get(k) for k in (RUNNER_ENV, "AIRFLOW_CONN_AWS_DEFAULT")}
    os.environ[RUNNER_ENV] = "tests.local_aws.test_kinesisanalytics_support:FakeJobRunner"
    endpoint = LocalEndpoint(port=free_port_pair(), state_dir=tmp_path_factory.mktemp("teardown-aws"))
    endpoint.start()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = local_airflow.aws_connection_uri(endpoint.port)
    try:
        yield endpoint
    finally:
        endpoint.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def running(endpoint):
    """Everything set up, the Flink application RUNNING, and an object in the data lake."""
    run = run_dag("clickstream_setup")
    assert run.state == "success", task_states(run)
    run = run_dag("clickstream_flink_lifecycle", conf={"action": "start"})
    assert run.state == "success", task_states(run)
    kda, cfg = client("kinesisanalyticsv2"), settings()
    status = kda.describe_application(ApplicationName=cfg.flink_app)["ApplicationDetail"]["ApplicationStatus"]
    assert status == "RUNNING"
    client("s3").put_object(Bucket=cfg.bucket, Key="compacted/events/keep-me.parquet", Body=b"data")
    return cfg


def test_a_failed_deletion_fails_the_run_and_the_others_still_run(running, monkeypatch):
    cfg = running
    # An empty name fails the request's validation in botocore: the delivery stream cannot be deleted.
    monkeypatch.setenv("CLICKSTREAM_DELIVERY_STREAM", "")
    run = run_dag("clickstream_teardown", conf={**teardown_conf(), "keep_data_lake": True})
    states = task_states(run)
    assert run.state == "failed", states
    assert states["delete_delivery_stream"] == "failed" and states["watcher"] == "failed", states
    # all_done: the stream and the buckets go although a reader's deletion failed.
    for task_id in (
        "delete_flink_app",
        "delete_stream",
        "delete_buckets",
        "delete_alerting",
        "delete_catalog",
    ):
        assert states[task_id] == "success", states
    summary = task_result(run, "summary")
    assert (
        summary[f"kinesisanalyticsv2:{cfg.flink_app}"] == "deleted"
    )  # it was RUNNING: stopped, then deleted
    assert summary[f"kinesis:{cfg.stream_name}"] == "deleted"
    assert summary[f"s3://{cfg.artifacts_bucket}"] == "deleted"
    assert summary[f"s3://{cfg.bucket}"] == "kept"
    monkeypatch.delenv("CLICKSTREAM_DELIVERY_STREAM")
    assert leftover_resources() == {"firehose": [cfg.delivery_stream], "s3": [cfg.bucket]}
    body = client("s3").get_object(Bucket=cfg.bucket, Key="compacted/events/keep-me.parquet")["Body"].read()
    assert body == b"data"


def test_a_rerun_finishes_the_job(running):
    cfg = running
    run = run_dag("clickstream_teardown", conf=teardown_conf())
    states = task_states(run)
    assert run.state == "success", states
    assert states["watcher"] == "skipped", states
    summary = task_result(run, "summary")
    assert summary[f"firehose:{cfg.delivery_stream}"] == "deleted"
    assert summary[f"s3://{cfg.bucket}"] == "deleted"
    assert summary[f"kinesisanalyticsv2:{cfg.flink_app}"] == "absent"
    assert summary[f"sns:{cfg.alert_topic}"] == "absent"
    assert leftover_resources() == {}


def test_a_versioned_bucket_is_emptied_of_every_version(endpoint):
    s3, bucket = client("s3"), "teardown-versioned"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        s3.put_object(Bucket=bucket, Key="a/one.json", Body=f"{i}".encode())
    s3.put_object(Bucket=bucket, Key="b/two.json", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="b/two.json")  # a delete marker over one version
    s3.create_multipart_upload(Bucket=bucket, Key="c/unfinished.bin")
    listed = s3.list_object_versions(Bucket=bucket)
    assert len(listed["Versions"]) == 4 and len(listed["DeleteMarkers"]) == 1

    assert empty_and_delete_bucket(s3, bucket) == {f"s3://{bucket}": "deleted"}
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert empty_and_delete_bucket(s3, bucket) == {f"s3://{bucket}": "absent"}

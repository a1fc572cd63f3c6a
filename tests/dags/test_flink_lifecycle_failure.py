"""include.flink_lifecycle.explain_start_failure: what clickstream_flink_lifecycle says when a start fails, from
DescribeApplication, the failed operation (DescribeApplicationOperation) and ListApplicationSnapshots.

The same function over a real local endpoint's answers (a snapshot of an older job graph) is exercised in
tests/local_aws/test_kinesisanalytics_api.py."""

from __future__ import annotations

import pytest

from include.flink_lifecycle import explain_start_failure, incompatible_state_error

CANNOT_MAP = (
    "Cannot map checkpoint/savepoint state for operator 0a448493b4782967b150582570326227 to the new program, "
    "because the operator is not available in the new program. If you want to allow to skip this, you can set "
    "the --allowNonRestoredState option on the CLI."
)
MIGRATION = (
    "java.lang.RuntimeException: Error while getting state\n"
    "\tat org.apache.flink.runtime.state.DefaultKeyedStateStore.getMapState(DefaultKeyedStateStore.java:109)\n"
    "Caused by: org.apache.flink.util.StateMigrationException: For heap backends, the new state serializer "
    "(MapSerializer) must not be incompatible with the old state serializer (MapSerializer).\n"
    "\t... 12 more"
)


def app(version=3, restore="RESTORE_FROM_LATEST_SNAPSHOT", snapshot_name=None, position="TRIM_HORIZON"):
    restore_description = {"ApplicationRestoreType": restore}
    if snapshot_name:
        restore_description["SnapshotName"] = snapshot_name
    return {
        "ApplicationName": "clickstream-sessions",
        "ApplicationStatus": "READY",
        "ApplicationVersionId": version,
        "ApplicationConfigurationDescription": {
            "RunConfigurationDescription": {
                "ApplicationRestoreConfigurationDescription": restore_description
            },
            "EnvironmentPropertyDescriptions": {
                "PropertyGroupDescriptions": [
                    {
                        "PropertyGroupId": "consumer.config.0",
                        "PropertyMap": {"source.init.position": position},
                    },
                    {"PropertyGroupId": "sink.config.0", "PropertyMap": {"output.path": "s3://b/streaming"}},
                ]
            },
        },
    }


def failed(error, operation="StartApplication"):
    return {
        "Operation": operation,
        "OperationStatus": "FAILED",
        "OperationFailureDetails": {"ErrorInfo": {"ErrorString": error}},
    }


def snapshot(name, version, created, status="READY"):
    return {
        "SnapshotName": name,
        "SnapshotStatus": status,
        "ApplicationVersionId": version,
        "SnapshotCreationTimestamp": created,
    }


SNAPSHOTS = [snapshot("old", 1, 100.0), snapshot("latest", 2, 200.0), snapshot("broken", 3, 300.0, "FAILED")]


@pytest.mark.parametrize(
    ("position", "consequence"),
    [
        (
            "TRIM_HORIZON",
            "re-reads the stream's whole retention, so sessions already written are written again",
        ),
        (
            "LATEST",
            "reads only records that arrive after the start, so the events since the snapshot are not in",
        ),
    ],
)
def test_a_snapshot_of_an_older_job_graph_names_it_the_param_and_the_consequence(position, consequence):
    message = explain_start_failure(app(position=position), failed(f"job failed: {CANNOT_MAP}"), SNAPSHOTS)
    assert message.startswith(
        "clickstream-sessions cannot restore snapshot latest (taken by application version 2; the application "
        "is now version 3): the snapshot belongs to an older job graph"
    )
    assert "action=start and restore=SKIP_RESTORE_FROM_SNAPSHOT" in message
    assert f"the source ({position}) {consequence}" in message
    assert message.endswith(f"Flink: {CANNOT_MAP}")


def test_a_state_migration_failure_deep_in_a_stack_trace_is_recognised():
    assert incompatible_state_error(MIGRATION) == (
        "StateMigrationException: For heap backends, the new state serializer (MapSerializer) must not be "
        "incompatible with the old state serializer (MapSerializer)."
    )
    message = explain_start_failure(app(), failed(MIGRATION, "UpdateApplication"), SNAPSHOTS)
    assert "cannot restore snapshot latest" in message and message.endswith("(MapSerializer).")


def test_a_named_snapshot_is_the_one_reported_not_the_latest():
    detail = app(restore="RESTORE_FROM_CUSTOM_SNAPSHOT", snapshot_name="old")
    message = explain_start_failure(detail, failed(CANNOT_MAP), SNAPSHOTS)
    assert message.startswith(
        "clickstream-sessions cannot restore snapshot old (taken by application version 1;"
    )


@pytest.mark.parametrize(
    ("detail", "operation", "expected"),
    [
        (
            app(),
            failed("the Flink job ended (FAILED): s3://no-such-bucket is not reachable"),
            "clickstream-sessions did not reach RUNNING (it is READY): StartApplication failed: the Flink job "
            "ended (FAILED): s3://no-such-bucket is not reachable",
        ),
        (  # Flink's words, but the start restored nothing: no snapshot to blame
            app(restore="SKIP_RESTORE_FROM_SNAPSHOT"),
            failed(CANNOT_MAP),
            f"clickstream-sessions did not reach RUNNING (it is READY): StartApplication failed: {CANNOT_MAP}",
        ),
        (
            app(),
            None,
            "clickstream-sessions did not reach RUNNING (it is READY): the start failed: the service gave no "
            "reason (see the application's CloudWatch logs)",
        ),
    ],
)
def test_other_failures_say_what_the_service_said(detail, operation, expected):
    assert explain_start_failure(detail, operation, SNAPSHOTS) == expected


def test_no_ready_snapshot_means_no_snapshot_to_blame():
    message = explain_start_failure(app(), failed(CANNOT_MAP), [snapshot("broken", 3, 1.0, "FAILED")])
    assert message.startswith("clickstream-sessions did not reach RUNNING")

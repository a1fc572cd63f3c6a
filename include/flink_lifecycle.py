"""Decisions around the Managed Flink application's lifecycle, kept out of the DAG files, and the lifecycle
DAG's params (the single source of its trigger form).

A start that fails is explained from what the service reports (:func:`explain_start_failure`): above all a
snapshot of an older job graph (the job's SQL changed since it was taken), which no retry can fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from include.aws import client
from include.dag_params import check_fields, from_mapping, param

#: Statuses from which StartApplication is accepted / in which the app counts as running.
STARTABLE = {"READY"}
RUNNING_LIKE = {"RUNNING", "STARTING", "UPDATING", "AUTOSCALING"}

ACTIONS = ("start", "stop")
RESTORE_TYPES = ("RESTORE_FROM_LATEST_SNAPSHOT", "SKIP_RESTORE_FROM_SNAPSHOT")

#: What Flink (2.3) says when a snapshot's state does not fit the job it is restored into: an operator of the
#: snapshot is not in the new job graph (a changed SQL query gives its operators new ids), its max
#: parallelism changed, or a state's serializer changed incompatibly.
INCOMPATIBLE_STATE_SIGNS = (
    "Cannot map checkpoint/savepoint state for operator",
    "Max parallelism mismatch between checkpoint/savepoint state and new program",
    "StateMigrationException",
    "must not be incompatible with the old state serializer",
)
#: What a start without the snapshot's state reads first, per ``source.init.position``.
REPLAY_CONSEQUENCE = {
    "TRIM_HORIZON": "re-reads the stream's whole retention, so sessions already written are written again",
    "LATEST": "reads only records that arrive after the start, so the events since the snapshot are not in "
    "the streaming output",
}


@dataclass(frozen=True)
class LifecycleParams:
    """What ``clickstream_flink_lifecycle`` does: start (resuming from the latest snapshot by default) or stop
    (taking a snapshot first unless forced)."""

    action: str = param("start", "Start or stop the Flink sessions application.", enum=ACTIONS)
    restore: str = param(
        "RESTORE_FROM_LATEST_SNAPSHOT",
        "On start: resume from the latest snapshot (no session lost or duplicated), or skip it and start "
        "fresh from the stream's retention.",
        enum=RESTORE_TYPES,
    )
    force: bool = param(
        False,
        "On stop: true stops at once without a snapshot, losing the in-flight session state.",
    )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> LifecycleParams:
        params = from_mapping(cls, values, "lifecycle")
        check_fields(params)
        return params


def application_status(app_name: str) -> str:
    detail = client("kinesisanalyticsv2").describe_application(ApplicationName=app_name)["ApplicationDetail"]
    return detail["ApplicationStatus"]


def choose_lifecycle_branch(app_name: str, action: str) -> str:
    """Task id to run next for ``action`` given the application's current status."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(map(repr, ACTIONS))}, got {action!r}")
    status = application_status(app_name)
    if action == "start":
        if status in RUNNING_LIKE:
            return "already_in_state" if status == "RUNNING" else "wait_until_running"
        if status not in STARTABLE:
            raise RuntimeError(f"cannot start {app_name}: it is {status}, StartApplication needs READY")
        return "start_application"
    if status in ("READY", "STOPPING"):
        return "already_in_state" if status == "READY" else "wait_until_stopped"
    return "stop_application"


# --------------------------------------------------------------------------------------------------- failures
def incompatible_state_error(error: str) -> str | None:
    """Flink's words in ``error`` that a snapshot's state does not fit the job (from the first sign to the end of
    its line, so a message that quotes them gives just them), or None."""
    for line in error.splitlines():
        found = [line.index(sign) for sign in INCOMPATIBLE_STATE_SIGNS if sign in line]
        if found:
            return line[min(found) :].strip()
    return None


def restored_snapshot(
    detail: Mapping[str, Any], snapshots: list[Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """The snapshot the last start restored, from DescribeApplication and ListApplicationSnapshots: the named
    one, the latest READY one, or None when the start skipped restoring."""
    restore = (
        detail.get("ApplicationConfigurationDescription", {})
        .get("RunConfigurationDescription", {})
        .get("ApplicationRestoreConfigurationDescription", {})
    )
    kind = restore.get("ApplicationRestoreType", "RESTORE_FROM_LATEST_SNAPSHOT")
    if kind == "SKIP_RESTORE_FROM_SNAPSHOT":
        return None
    if kind == "RESTORE_FROM_CUSTOM_SNAPSHOT":
        return next((s for s in snapshots if s.get("SnapshotName") == restore.get("SnapshotName")), None)
    ready = [s for s in snapshots if s.get("SnapshotStatus") == "READY"]
    return max(ready, key=lambda s: s["SnapshotCreationTimestamp"]) if ready else None


def explain_start_failure(
    detail: Mapping[str, Any],
    failed_operation: Mapping[str, Any] | None,
    snapshots: list[Mapping[str, Any]],
) -> str:
    """Why the application did not reach RUNNING, and what to do, from what the service reports.

    ``detail`` is DescribeApplication's ApplicationDetail, ``failed_operation`` the latest failed
    StartApplication / UpdateApplication's ApplicationOperationInfoDetails (DescribeApplicationOperation;
    its ErrorString is the reason), ``snapshots`` ListApplicationSnapshots' summaries.
    """
    name, status = detail.get("ApplicationName", "the application"), detail.get("ApplicationStatus")
    error = ((failed_operation or {}).get("OperationFailureDetails") or {}).get("ErrorInfo", {}).get(
        "ErrorString"
    ) or ""
    flink_says = incompatible_state_error(error)
    snapshot = restored_snapshot(detail, snapshots)
    if flink_says is None or snapshot is None:
        reason = error or "the service gave no reason (see the application's CloudWatch logs)"
        operation = (failed_operation or {}).get("Operation", "the start")
        return f"{name} did not reach RUNNING (it is {status}): {operation} failed: {reason}"
    version, taken_by = detail.get("ApplicationVersionId"), snapshot.get("ApplicationVersionId")
    position = _init_position(detail)
    consequence = REPLAY_CONSEQUENCE.get(position, f"starts from {position}")
    older = (
        f"taken by application version {taken_by}; the application is now version {version}"
        if taken_by != version
        else f"taken by application version {taken_by}"
    )
    return (
        f"{name} cannot restore snapshot {snapshot['SnapshotName']} ({older}): the snapshot belongs to an older "
        "job graph, the job's SQL or code changed since and Flink cannot map the snapshot's state onto the "
        "new job, so every start from it fails the same way. To start the current job without that state, "
        "trigger clickstream_flink_lifecycle with action=start and restore=SKIP_RESTORE_FROM_SNAPSHOT "
        "(StartApplication with ApplicationRestoreType SKIP_RESTORE_FROM_SNAPSHOT). That drops the sessions "
        f"open in the snapshot, and the source ({position}) {consequence}; the reconciliation DAG reports the "
        f"affected hours against the batch sessions. Flink: {flink_says}"
    )


def _init_position(detail: Mapping[str, Any]) -> str:
    from include.flink_app.flink_job import GROUP_CONSUMER

    groups = (
        detail.get("ApplicationConfigurationDescription", {})
        .get("EnvironmentPropertyDescriptions", {})
        .get("PropertyGroupDescriptions", [])
    )
    consumer = next((g["PropertyMap"] for g in groups if g.get("PropertyGroupId") == GROUP_CONSUMER), {})
    return consumer.get("source.init.position", "TRIM_HORIZON")


def start_failure_message(kda: Any, app_name: str) -> str:
    """:func:`explain_start_failure` for the application as the service (``kda``, a kinesisanalyticsv2
    client) describes it now."""
    detail = kda.describe_application(ApplicationName=app_name)["ApplicationDetail"]
    operations = kda.list_application_operations(ApplicationName=app_name, OperationStatus="FAILED")
    failed = [
        op
        for op in operations.get("ApplicationOperationInfoList", [])
        if op.get("Operation") in ("StartApplication", "UpdateApplication")
    ]
    details = None
    if failed:
        latest = max(failed, key=lambda op: op["StartTime"])
        details = kda.describe_application_operation(
            ApplicationName=app_name, OperationId=latest["OperationId"]
        )["ApplicationOperationInfoDetails"]
    pages = kda.get_paginator("list_application_snapshots").paginate(ApplicationName=app_name)
    snapshots = [s for page in pages for s in page.get("SnapshotSummaries", [])]
    return explain_start_failure(detail, details, snapshots)

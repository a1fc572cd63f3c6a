"""Decisions around the Managed Flink application's lifecycle, kept out of the DAG files, and the lifecycle
DAG's params (the single source of its trigger form)."""

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

"""Decisions around the Managed Flink application's lifecycle, kept out of the DAG files."""

from __future__ import annotations

from include.aws import client

#: Statuses from which StartApplication is accepted / in which the app counts as running.
STARTABLE = {"READY"}
RUNNING_LIKE = {"RUNNING", "STARTING", "UPDATING", "AUTOSCALING"}


def application_status(app_name: str) -> str:
    detail = client("kinesisanalyticsv2").describe_application(ApplicationName=app_name)["ApplicationDetail"]
    return detail["ApplicationStatus"]


def choose_lifecycle_branch(app_name: str, action: str) -> str:
    """Task id to run next for ``action`` given the application's current status."""
    if action not in ("start", "stop"):
        raise ValueError(f"action must be 'start' or 'stop', got {action!r}")
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

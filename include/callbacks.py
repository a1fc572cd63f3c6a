"""Shared Airflow callbacks: failures and watchdog findings are published to the SNS alert topic.

Alerting must never mask the original failure, so a failure to alert is logged, not raised.
"""

from __future__ import annotations

import logging
from typing import Any

from include.config import AWS_CONN_ID, settings

log = logging.getLogger(__name__)


def alert_topic_arn(conn_id: str = AWS_CONN_ID) -> str:
    """ARN of the alert topic in the connection's account and region."""
    from include.aws import client

    sts = client("sts", conn_id)
    account = sts.get_caller_identity()["Account"]
    return f"arn:aws:sns:{sts.meta.region_name}:{account}:{settings().alert_topic}"


def send_alert(subject: str, message: str, context: dict[str, Any] | None = None) -> None:
    """Publish an alert with the amazon provider's SnsNotifier (SNS subjects are limited to 100 chars)."""
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    notifier = SnsNotifier(
        aws_conn_id=AWS_CONN_ID,
        target_arn=alert_topic_arn(),
        subject=subject[:100],
        message=message,
    )
    notifier.notify(context or {})


def failure_message(context: dict[str, Any]) -> tuple[str, str]:
    ti = context.get("task_instance") or context.get("ti")
    dag_id = getattr(ti, "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    run_id = getattr(ti, "run_id", "?")
    try_number = getattr(ti, "try_number", "?")
    exception = context.get("exception")
    interval = f"{context.get('data_interval_start')} → {context.get('data_interval_end')}"
    subject = f"[clickstream] {dag_id}.{task_id} failed"
    message = (
        f"Task {dag_id}.{task_id} failed.\n"
        f"run_id: {run_id}\ntry: {try_number}\ndata interval: {interval}\n"
        f"error: {type(exception).__name__ if exception else 'unknown'}: {exception}\n"
    )
    return subject, message


def _alert_already_sent(exception: BaseException | None) -> bool:
    """A task that published its own, more specific alert marks its exception (or the one it chained)."""
    while exception is not None:
        if getattr(exception, "alert_sent", False):
            return True
        exception = exception.__cause__
    return False


def alert_on_failure(context: dict[str, Any]) -> None:
    if _alert_already_sent(context.get("exception")):
        return
    subject, message = failure_message(context)
    try:
        send_alert(subject, message)
    except Exception:  # noqa: BLE001 - alerting must not hide the task's own failure
        log.exception("Could not publish the failure alert %r", subject)


def deadline_message(context: dict[str, Any] | None) -> tuple[str, str]:
    """The deadline alert's text from the context Airflow passes a deadline callback (``dag_run`` as JSON,
    ``deadline`` with its time)."""
    context = context or {}
    run = context.get("dag_run") or {}
    deadline = (context.get("deadline") or {}).get("deadline_time")
    dag_id = run.get("dag_id", "clickstream_reconciliation")
    hour = run.get("data_interval_start") or run.get("logical_date") or "?"
    subject = f"[clickstream] {dag_id}: hour {str(hour)[:13]} not reconciled by its deadline"
    message = (
        f"The reconciliation of the hour starting {hour} (run {run.get('run_id', '?')}, state "
        f"{run.get('state', '?')}) has not finished by its deadline {deadline}.\n"
        "Usually its sensor is still waiting: for a compaction manifest of an hour it reads (see "
        "clickstream_compaction) or for the stream's progress marker to pass the settle horizon (is the Flink "
        "application running? see clickstream_flink_watchdog). The sensor's log says which.\n"
    )
    return subject, message


def alert_on_missed_deadline(context: dict[str, Any] | None = None, **_: Any) -> None:
    """SyncCallback of the reconciliation's DeadlineAlert: publish the deadline alert (never raise)."""
    subject, message = deadline_message(context)
    try:
        send_alert(subject, message)
    except Exception:  # noqa: BLE001 - a callback failure must not mask the missed deadline in the logs
        log.exception("Could not publish the deadline alert %r", subject)

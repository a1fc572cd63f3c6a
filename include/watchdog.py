"""The Flink watchdog's check: the streaming app must run whenever the producer is active."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from include.callbacks import send_alert
from include.config import settings
from include.flink_lifecycle import application_status

log = logging.getLogger(__name__)


class FlinkAppNotRunning(RuntimeError):
    pass


#: The producer counts as active when it has a run for any of its last minutes in this window.
ACTIVITY_WINDOW_MINUTES = 10


def recent_minute_starts(now: datetime, minutes: int = ACTIVITY_WINDOW_MINUTES) -> list[datetime]:
    """Logical dates the producer's runs of the last ``minutes`` minutes have, newest first.

    A scheduled run's logical date is its data interval's start (the minutes before now). A run made with the
    interval's *end* as its logical date (``dag.test`` / ``airflow dags test`` with the timetable inferring the
    interval that ends there) has the current minute, so that is counted too (measured: without it the
    watchdog missed an in-process producer run).
    """
    end = now.astimezone(UTC).replace(second=0, microsecond=0)
    return [end - timedelta(minutes=i) for i in range(0, minutes + 1)]


def producer_is_active(ti, dag_id: str, now: datetime) -> bool:
    """Active = has DAG runs for recent minutes, counted through the Task SDK (tasks get no DB access)."""
    return ti.get_dr_count(dag_id=dag_id, logical_dates=recent_minute_starts(now)) > 0


def check_flink_app(producer_active: bool, producer_dag_id: str = "clickstream_producer") -> dict:
    app = settings().flink_app
    active = producer_active
    try:
        status = application_status(app)
    except Exception as exc:  # noqa: BLE001 - a missing app is exactly what the watchdog must report
        status = f"UNKNOWN ({type(exc).__name__}: {exc})"
    result = {"application": app, "status": status, "producer_active": active}
    if active and status != "RUNNING":
        message = (
            f"The Flink application {app} is {status} while the producer DAG {producer_dag_id} is active: "
            "sessions are not being built. Start it with the clickstream_flink_lifecycle DAG (action=start)."
        )
        send_alert(f"[clickstream] Flink app {app} is {status.split(' ')[0]}", message)
        raise FlinkAppNotRunning(message)
    log.info("watchdog ok: %s", result)
    return result

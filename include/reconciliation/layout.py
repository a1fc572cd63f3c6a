"""Where reconciliation reads and writes in the lake bucket, derived from :class:`include.config.Settings`
(the style of :mod:`include.compaction.layout`).

    batch/sessions/dt=2026-11-27/hr=10/part-00000.parquet           hour H's batch sessions (SESSION_FIELDS)
    reports/reconciliation/dt=2026-11-27/hr=10/report.json          the report
    reports/reconciliation/dt=2026-11-27/hr=10/differences.parquet  every difference
    streaming/{sessions,late_events,rejected_events}/dt=.../hr=.../  what the Flink job writes (read only)

``dt=/hr=`` like the stream's sessions, so the published batch sessions and the streamed ones partition alike.
"""

from __future__ import annotations

from datetime import datetime

from include.compaction.layout import normalize_hour
from include.config import Settings

SESSIONS_FILE_NAME = "part-00000.parquet"
REPORT_FILE_NAME = "report.json"
DIFFERENCES_FILE_NAME = "differences.parquet"
#: The Flink sinks' folders under ``Settings.streaming_prefix``.
STREAM_SESSIONS = "sessions"
STREAM_LATE = "late_events"
STREAM_REJECTED = "rejected_events"


def partition_path(hour_start: datetime) -> str:
    """``dt=YYYY-MM-DD/hr=HH/`` of an hour (UTC)."""
    hour = normalize_hour(hour_start)
    return f"dt={hour.strftime('%Y-%m-%d')}/hr={hour.strftime('%H')}/"


def batch_sessions_prefix(settings: Settings, hour_start: datetime) -> str:
    return settings.batch_sessions_prefix + partition_path(hour_start)


def batch_sessions_key(settings: Settings, hour_start: datetime) -> str:
    return batch_sessions_prefix(settings, hour_start) + SESSIONS_FILE_NAME


def report_prefix(settings: Settings, hour_start: datetime) -> str:
    return settings.reconciliation_reports_prefix + partition_path(hour_start)


def report_key(settings: Settings, hour_start: datetime) -> str:
    return report_prefix(settings, hour_start) + REPORT_FILE_NAME


def differences_key(settings: Settings, hour_start: datetime) -> str:
    return report_prefix(settings, hour_start) + DIFFERENCES_FILE_NAME


def stream_prefix(settings: Settings, table: str, hour_start: datetime) -> str:
    """A Flink sink's partition: sessions by session_start hour, late/rejected events by arrival hour."""
    if table not in (STREAM_SESSIONS, STREAM_LATE, STREAM_REJECTED):
        raise ValueError(f"table must be one of sessions, late_events, rejected_events, got {table!r}")
    return f"{settings.streaming_prefix}{table}/{partition_path(hour_start)}"


def is_committed_part(key: str) -> bool:
    """Flink's committed part files; in-progress files start with '.', markers (_SUCCESS) with '_'."""
    name = key.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith((".", "_"))

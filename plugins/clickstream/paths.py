"""Where the Clickstream page's data lives in the lake bucket: every key or prefix the page reads is built here.

* The Flink sinks (JSON lines) are partitioned ``dt=YYYY-MM-DD/hr=HH/`` by session start (sessions), window start
  (metrics) or arrival time (late and rejected events), under ``Settings.streaming_prefix`` (see
  include/sql/flink/inserts.sql and include/flink_app/flink_job.py ``SINK_DIRS``).
* Compaction manifests and quarantine use include/compaction/layout.py (``event_date=…/event_hour=…/``).
* Batch sessions and reconciliation reports: include/reconciliation/layout.py (``dt=…/hr=…/`` under the
  prefixes of include/config.py); the day prefixes below list one day of those hours at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from include.compaction import layout
from include.config import Settings
from include.reconciliation import layout as reconciliation_layout

#: Sub-directories of the Flink sinks under ``streaming_prefix`` (include/flink_app/flink_job.py SINK_DIRS).
SESSIONS_SINK = reconciliation_layout.STREAM_SESSIONS
METRICS_SINK = "metrics"
LATE_SINK = reconciliation_layout.STREAM_LATE
REJECTED_SINK = reconciliation_layout.STREAM_REJECTED

_DT_HR = re.compile(r"(?:dt|event_date)=(\d{4}-\d{2}-\d{2})/(?:hr|event_hour)=(\d{2})/")

MAX_WINDOW_HOURS = 24 * 31


@dataclass(frozen=True)
class HourWindow:
    """The hours ``[start, end)``, both aligned to the hour in UTC."""

    start: datetime
    end: datetime

    @classmethod
    def ending_at(cls, end: datetime, hours: int) -> HourWindow:
        end = layout.normalize_hour(end, "end")
        if not 1 <= hours <= MAX_WINDOW_HOURS:
            raise ValueError(f"hours must be between 1 and {MAX_WINDOW_HOURS}, got {hours}")
        return cls(end - timedelta(hours=hours), end)

    def hours(self) -> list[datetime]:
        count = int((self.end - self.start) / timedelta(hours=1))
        return [self.start + timedelta(hours=i) for i in range(count)]

    def days(self) -> list[str]:
        """The dates (``YYYY-MM-DD``) the window touches, oldest first."""
        return sorted({h.strftime("%Y-%m-%d") for h in self.hours()})

    def contains(self, hour: datetime) -> bool:
        return self.start <= hour < self.end


def current_hour_end(now: datetime | None = None) -> datetime:
    """The end of the hour that contains ``now``: the default window ends there and includes the open hour."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def hour_of_key(key: str) -> datetime | None:
    """The partition hour in a key (``dt=…/hr=…/`` or ``event_date=…/event_hour=…/``), None when it has none."""
    match = _DT_HR.search(key)
    if match is None:
        return None
    return datetime.strptime(f"{match.group(1)} {match.group(2)}", "%Y-%m-%d %H").replace(tzinfo=UTC)


def is_data_file(key: str) -> bool:
    """False for Flink's ``_SUCCESS`` markers, hidden (in-progress) files and "directories"."""
    return reconciliation_layout.is_committed_part(key)


def iso_hour(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("%Y-%m-%dT%H:00:00Z")


def _dt_hr(hour: datetime) -> str:
    return hour.astimezone(UTC).strftime("dt=%Y-%m-%d/hr=%H/")


def sink_day_prefix(settings: Settings, sink: str, day: str) -> str:
    """``streaming/<sink>/dt=<day>/``: one listing returns every hour of the day."""
    return f"{settings.streaming_prefix}{sink}/dt={day}/"


def sink_hour_prefix(settings: Settings, sink: str, hour: datetime) -> str:
    return f"{settings.streaming_prefix}{sink}/{_dt_hr(hour)}"


def batch_sessions_day_prefix(settings: Settings, day: str) -> str:
    return f"{settings.batch_sessions_prefix}dt={day}/"


def batch_sessions_hour_prefix(settings: Settings, hour: datetime) -> str:
    return reconciliation_layout.batch_sessions_prefix(settings, hour)


def reports_day_prefix(settings: Settings, day: str) -> str:
    return f"{settings.reconciliation_reports_prefix}dt={day}/"


def report_key(settings: Settings, hour: datetime) -> str:
    """``reports/reconciliation/dt=…/hr=…/report.json``: issue 10's report of hour H."""
    return reconciliation_layout.report_key(settings, hour)


def manifests_day_prefix(settings: Settings, day: str) -> str:
    return f"{settings.manifest_prefix}event_date={day}/"


def manifest_key(settings: Settings, hour: datetime) -> str:
    return layout.manifest_key(settings, hour)

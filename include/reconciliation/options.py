"""What one reconciliation run compares: the hour, its read window and settle horizon, and the pass rule.

Hour H's batch sessions are those whose session_start is in [H, H + 1 h). The batch reads events from H - gap
(an earlier event of a session starting in H would be within the gap, so it starts before H) to the settle
horizon H + 1 h + L; a session is settled when last_event_at + gap <= horizon, i.e. every event that could
still extend it has been read. Unsettled sessions are ``deferred`` on both sides and not compared.

A later run completes them: with ``extension_hours`` k the horizon is H + 1 h + L + k h. Sessions settled by a
horizon are the same at every later one (no later event can join them), so once every session of H is settled,
any run of H from then on publishes the same sessions.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from include.compaction.layout import normalize_hour
from include.config import Settings
from include.sessions.contract import SessionContract, iso_ms

HOUR_MS = 3_600_000
#: The longest extension of an hour's read window (a day of events read for one hour at most).
MAX_EXTENSION_HOURS = 24
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(milliseconds=1)


def floor_hour(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return datetime(ts.year, ts.month, ts.day, ts.hour, tzinfo=UTC)


def hours_between(first: datetime, last: datetime) -> list[datetime]:
    """Every hour start from floor(first) to floor(last), inclusive."""
    hour, end, hours = floor_hour(first), floor_hour(last), []
    while hour <= end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


@dataclass(frozen=True)
class ReconcileOptions:
    """Tunables of a run; :meth:`from_settings` takes the deployment's values from :class:`Settings`."""

    contract: SessionContract = field(default_factory=SessionContract)
    #: L in minutes: how far past the hour the batch reads to finish the hour's sessions.
    settle_minutes: int = 30
    #: The hour fails when (missing_in_stream + missing_in_batch + mismatch) sessions, or the events they
    #: differ by, exceed this share of the batch's compared sessions (events).
    max_unexplained_share: float = 0.001
    #: When the stream started. Hours entirely before it are ``batch_only``. When unknown (None), an hour
    #: without any stream output (no session starting in it, no late or rejected record arriving in it) is
    #: ``batch_only``: the stream cannot have been running.
    stream_started_at: datetime | None = None
    #: Processing time for the ``future`` reject rule; None = now. Past hours give the same result either way.
    now: datetime | None = None
    #: At most this many differences in report.json (all of them go to differences.parquet); None = all.
    report_differences_limit: int | None = None
    #: DuckDB threads (None = DuckDB's default, one per core).
    threads: int | None = None
    #: Hours the read window runs past H + 1 h + L, to complete sessions still open at that first horizon
    #: (``tasks.complete_earlier_hours``). 0 for an hour's own run while later hours are not in yet.
    extension_hours: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.settle_minutes, bool) or not isinstance(self.settle_minutes, int):
            raise ValueError(f"settle_minutes must be an integer, got {self.settle_minutes!r}")
        if not 0 <= self.settle_minutes <= 24 * 60:
            raise ValueError(f"settle_minutes must be between 0 and 1440, got {self.settle_minutes!r}")
        share = self.max_unexplained_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share < 1:
            raise ValueError(f"max_unexplained_share must be a number in [0, 1), got {share!r}")
        for name in ("stream_started_at", "now"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
                raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        ext = self.extension_hours
        if isinstance(ext, bool) or not isinstance(ext, int) or not 0 <= ext <= MAX_EXTENSION_HOURS:
            raise ValueError(f"extension_hours must be an integer in [0, {MAX_EXTENSION_HOURS}], got {ext!r}")
        limit = self.report_differences_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError(
                f"report_differences_limit must be a non-negative integer or None, got {limit!r}"
            )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ReconcileOptions:
        values: dict[str, object] = {
            "settle_minutes": settings.reconcile_settle_minutes,
            "max_unexplained_share": settings.reconcile_max_unexplained_share,
        }
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: object) -> ReconcileOptions:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class HourWindow:
    """The bounds of hour H's run, in epoch milliseconds (all inclusive except hour_end_ms)."""

    hour: datetime
    hour_start_ms: int
    hour_end_ms: int
    read_start_ms: int
    horizon_ms: int
    gap_ms: int
    extension_hours: int = 0

    @classmethod
    def of(cls, hour: datetime, options: ReconcileOptions) -> HourWindow:
        hour = normalize_hour(hour, "hour")
        start = to_ms(hour)
        gap = options.contract.gap_ms
        return cls(
            hour=hour,
            hour_start_ms=start,
            hour_end_ms=start + HOUR_MS,
            read_start_ms=start - gap,
            horizon_ms=start + HOUR_MS * (1 + options.extension_hours) + options.settle_minutes * 60_000,
            gap_ms=gap,
            extension_hours=options.extension_hours,
        )

    @property
    def horizon(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.horizon_ms)

    @property
    def read_start(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.read_start_ms)

    def event_hours(self) -> list[datetime]:
        """Compacted event hours the batch reads: H - gap ... the horizon."""
        return hours_between(self.read_start, self.horizon)

    def stream_session_hours(self) -> list[datetime]:
        """Stream session partitions (by session_start hour) that can overlap a session of the window."""
        return hours_between(self.read_start - timedelta(hours=1), self.horizon)

    def ledger_hours(self, until: datetime, max_hours: int) -> list[datetime]:
        """Arrival-hour partitions of the late/rejected ledgers: from H - gap to ``until``, at most max_hours."""
        last = min(floor_hour(until), floor_hour(self.hour + timedelta(hours=max_hours)))
        return hours_between(self.read_start, max(last, floor_hour(self.read_start)))

    def describe(self) -> dict[str, str]:
        return {
            "hour_start": iso_ms(self.hour_start_ms),
            "read_from": iso_ms(self.read_start_ms),
            "settle_horizon": iso_ms(self.horizon_ms),
            "extension_hours": self.extension_hours,
        }

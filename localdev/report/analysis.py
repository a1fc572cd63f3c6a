"""The numbers behind every chart of the report, as small tables (columns + rows), computed from :class:`LakeData`.

Kept apart from the drawing so a test can check each chart's numbers against a count it makes itself, and so
the HTML can print the same table under each chart.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from include.sessions import batch as batch_sessions
from include.sessions.contract import SessionContract
from localdev.report.lake import SESSIONS_SCHEMA, LakeData

#: Session duration buckets: (label, upper bound in seconds, exclusive; None = open).
DURATION_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("0 s (1 event)", 0.001),
    ("0 – 30 s", 30),
    ("30 s – 1 min", 60),
    ("1 – 2 min", 120),
    ("2 – 5 min", 300),
    ("5 – 10 min", 600),
    ("10 – 30 min", 1800),
    ("≥ 30 min", None),
)
#: Events-per-session buckets: (label, lowest, highest inclusive; None = open).
EVENT_COUNT_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1", 1, 1),
    ("2", 2, 2),
    ("3", 3, 3),
    ("4–5", 4, 5),
    ("6–10", 6, 10),
    ("11–20", 11, 20),
    ("21–50", 21, 50),
    ("> 50", 51, None),
)
CAUSE_COLUMNS = (
    "matched",
    "late",
    "duplicate",
    "rule_difference",
    "missing_in_stream",
    "missing_in_batch",
    "mismatch",
    "deferred",
)
TOP_N = 12


@dataclass
class ChartData:
    """One chart's numbers: ``rows`` of ``columns``; ``name`` is the PNG's file stem."""

    name: str
    title: str
    caption: str
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclass
class Analytics:
    """Headline numbers and the charts' tables (only the charts the data allows)."""

    headline: list[tuple[str, str]]
    charts: list[ChartData] = field(default_factory=list)
    #: Sentences saying which parts are missing and why (e.g. no reconciliation report yet).
    notes: list[str] = field(default_factory=list)

    def chart(self, name: str) -> ChartData:
        for chart in self.charts:
            if chart.name == name:
                return chart
        raise KeyError(f"no chart {name!r}; charts: {[c.name for c in self.charts]}")


def _minute(ts: str) -> str:
    """``2026-11-27T10:15:30.123Z`` -> ``2026-11-27T10:15``."""
    return ts[:16]


def _minute_span(minutes: set[str]) -> list[str]:
    """Every minute from the first to the last of ``minutes`` (zeros between them are real: nothing started)."""
    if not minutes:
        return []
    first, last = min(minutes), max(minutes)
    current = datetime.strptime(first, "%Y-%m-%dT%H:%M")
    end = datetime.strptime(last, "%Y-%m-%dT%H:%M")
    out = []
    while current <= end:
        out.append(current.strftime("%Y-%m-%dT%H:%M"))
        current += timedelta(minutes=1)
    return out


def _in_hours(table: pa.Table, column: str, hours: list[datetime]) -> pa.Table:
    wanted = {h.strftime("%Y-%m-%dT%H") for h in hours}
    keep = [str(v)[:13] in wanted for v in table.column(column).to_pylist()]
    return table.filter(pa.array(keep, pa.bool_()))


def recompute_batch_sessions(events: pa.Table, contract: SessionContract | None = None) -> pa.Table:
    """Batch sessions of compacted events with the batch SQL (for hours the reconciliation has not published)."""
    con = batch_sessions.connect()
    try:
        con.register("compacted", events)
        rows = batch_sessions.sessions(
            con, contract or SessionContract(), "compacted", source_kind="typed", arrival_order="event_id"
        )
    finally:
        con.close()
    return pa.Table.from_pylist(rows, schema=SESSIONS_SCHEMA)


def _duration_bucket(duration_ms: int) -> str:
    seconds = duration_ms / 1000
    for label, upper in DURATION_BUCKETS:
        if upper is None or seconds < upper:
            return label
    raise AssertionError("unreachable: the last bucket is open")


def _event_count_bucket(count: int) -> str:
    for label, low, high in EVENT_COUNT_BUCKETS:
        if count >= low and (high is None or count <= high):
            return label
    raise ValueError(f"a session has event_count {count}, expected at least 1")


def _events_query(events: pa.Table, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect()
    try:
        con.register("events", events)
        return con.execute(sql).fetchall()
    finally:
        con.close()


def analyse(lake: LakeData, contract: SessionContract | None = None) -> Analytics:
    """Every chart the data allows, plus the headline numbers."""
    stream = _in_hours(lake.stream_sessions, "session_start", lake.hours)
    events = lake.events if lake.events is not None else None
    notes: list[str] = []
    if lake.batch_sessions is not None and lake.batch_sessions.num_rows:
        batch = _in_hours(lake.batch_sessions, "session_start", lake.hours)
        batch_label = "batch (published by the reconciliation)"
    elif events is not None and events.num_rows:
        batch = _in_hours(recompute_batch_sessions(events, contract), "session_start", lake.hours)
        batch_label = "batch (recomputed from the compacted events)"
        notes.append(
            f"No batch sessions are published under {lake.sources.get('batch', 'batch/sessions/')} for these "
            "hours (the reconciliation has not run), so the batch side is recomputed here from the compacted "
            "Parquet with the same batch SQL."
        )
    else:
        batch = SESSIONS_SCHEMA.empty_table()
        batch_label = "batch"
        notes.append("No compacted events for these hours: the batch side is empty.")

    charts: list[ChartData] = []
    stream_minutes = Counter([_minute(s) for s in stream.column("session_start").to_pylist()])
    batch_minutes = Counter([_minute(s) for s in batch.column("session_start").to_pylist()])
    minutes = _minute_span(set(stream_minutes) | set(batch_minutes))
    if minutes:
        charts.append(
            ChartData(
                "sessions_per_minute",
                "Sessions per minute, stream vs batch",
                f"Sessions by the minute they started: the Flink job's (stream) and the {batch_label}. "
                "The last minute or so of a stream stays open until newer events pass the watermark.",
                ["minute", "stream", "batch"],
                [(m, stream_minutes.get(m, 0), batch_minutes.get(m, 0)) for m in minutes],
            )
        )
    if stream.num_rows or batch.num_rows:
        s_dur = Counter(_duration_bucket(v) for v in stream.column("duration_ms").to_pylist())
        b_dur = Counter(_duration_bucket(v) for v in batch.column("duration_ms").to_pylist())
        charts.append(
            ChartData(
                "session_duration",
                "Session duration",
                "last_event_at − session_start of each session (a one-event session lasts 0 s).",
                ["duration", "stream", "batch"],
                [(label, s_dur.get(label, 0), b_dur.get(label, 0)) for label, _ in DURATION_BUCKETS],
            )
        )
        s_cnt = Counter(_event_count_bucket(v) for v in stream.column("event_count").to_pylist())
        b_cnt = Counter(_event_count_bucket(v) for v in batch.column("event_count").to_pylist())
        charts.append(
            ChartData(
                "events_per_session",
                "Events per session",
                "Distinct events in each session.",
                ["events", "stream", "batch"],
                [(label, s_cnt.get(label, 0), b_cnt.get(label, 0)) for label, _, _ in EVENT_COUNT_BUCKETS],
            )
        )

    sessions_by = {
        column: Counter(stream.column(column).to_pylist()) for column in ("countrycode", "device_id")
    }
    if events is not None and events.num_rows:
        top = _events_query(
            events,
            f"SELECT client_event, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_N}",
        )
        charts.append(
            ChartData(
                "top_events",
                "Top events",
                f"The {TOP_N} most frequent client_event values among the compacted (valid, deduplicated) events.",
                ["client_event", "events"],
                [(name, int(n)) for name, n in top],
            )
        )
        for column, name, title in (
            ("countrycode", "countries", "Countries"),
            ("device_id", "devices", "Devices"),
        ):
            rows = _events_query(
                events,
                f"SELECT {column}, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP_N}",
            )
            charts.append(
                ChartData(
                    name,
                    title,
                    f"Compacted events and streamed sessions per {column} (top {TOP_N} by events).",
                    [column, "events", "stream sessions"],
                    [(value, int(n), sessions_by[column].get(value, 0)) for value, n in rows],
                )
            )

    metrics = _in_hours(lake.metrics, "window_start", lake.hours)
    if metrics.num_rows:
        by_minute_device: Counter = Counter()
        for start, device, n in zip(
            metrics.column("window_start").to_pylist(),
            metrics.column("device_id").to_pylist(),
            metrics.column("events").to_pylist(),
            strict=True,
        ):
            by_minute_device[(_minute(start), device)] += n
        devices = sorted({device for _, device in by_minute_device})
        batch_per_minute: Counter = Counter()
        if events is not None and events.num_rows:
            batch_per_minute = Counter(
                pc.strftime(events.column("client_timestamp"), format="%Y-%m-%dT%H:%M").to_pylist()
            )
        metric_minutes = _minute_span({m for m, _ in by_minute_device})
        rows = []
        for m in metric_minutes:
            per_device = [by_minute_device.get((m, d), 0) for d in devices]
            rows.append((m, *per_device, sum(per_device), batch_per_minute.get(m, 0)))
        charts.append(
            ChartData(
                "metrics_per_minute",
                "Per-minute metrics from the stream",
                "Events per minute from the Flink job's metrics sink by device (on-time events only), and the "
                "compacted events of the same minute (batch) as a cross-check: late events are in the batch only.",
                ["minute", *devices, "stream total", "batch events"],
                rows,
            )
        )
    else:
        notes.append(f"No per-minute metrics under {lake.sources.get('stream', 'streaming/')}metrics/.")

    if lake.reconciliation:
        rows = []
        for hour, report in sorted(lake.reconciliation.items()):
            counts = report.get("counts", {})
            rows.append(
                (
                    hour.strftime("%Y-%m-%dT%H"),
                    report.get("status", "passed" if report.get("passed") else "failed"),
                    *(int(counts.get(c, 0)) for c in CAUSE_COLUMNS),
                    float(report.get("totals", {}).get("match_rate", 0.0)),
                )
            )
        charts.append(
            ChartData(
                "reconciliation",
                "Reconciliation per hour",
                "Each batch session of the hour and each unmatched stream session, by cause "
                "(see docs/sessions.md). An hour fails when the unexplained causes (missing_in_stream, "
                "missing_in_batch, mismatch) exceed the threshold.",
                ["hour", "status", *CAUSE_COLUMNS, "match_rate"],
                rows,
            )
        )
    else:
        notes.append(
            f"No reconciliation report under {lake.sources.get('reconciliation', 'reports/reconciliation/')} "
            "for these hours yet."
        )

    quarantined: Counter = Counter()
    for manifest in lake.manifests.values():
        quarantined.update(manifest.get("counts", {}).get("quarantined_by_reason", {}))
    hours = f"{lake.hours[0]:%Y-%m-%d %H}:00 – {lake.hours[-1] + timedelta(hours=1):%H}:00 UTC"
    headline = [
        ("hours", hours if lake.hours else "none"),
        ("compacted events", f"{events.num_rows:,}" if events is not None else "none compacted"),
        (
            "quarantined by compaction",
            f"{sum(quarantined.values()):,}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(quarantined.items())),
        ),
        ("stream sessions", f"{stream.num_rows:,}"),
        (batch_label.replace("batch", "batch sessions", 1), f"{batch.num_rows:,}"),
        ("late events (stream ledger)", f"{lake.late_events:,}"),
        ("rejected by the stream", f"{sum(lake.rejected_by_reason.values()):,}"),
    ]
    return Analytics(headline=headline, charts=charts, notes=notes)

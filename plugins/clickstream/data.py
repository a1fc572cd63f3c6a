"""The page's datasets, one function per endpoint: read the lake (or the Flink API) within bounds, summarise.

Every function takes its clients and an :class:`~clickstream.paths.HourWindow`, so tests call them directly
against the local endpoint and the API module only parses parameters and turns errors into JSON.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from clickstream import analytics, paths
from clickstream.lake import Budget, Lake, LakeDataError
from include.config import Settings

#: The DAG whose runs reconcile an hour; a failed hour is repaired by backfilling it (issue 10, section 6).
RECONCILIATION_DAG_ID = "clickstream_reconciliation"
#: Parallel GETs when reading an hour's report and manifest (boto3 clients are thread-safe).
READ_THREADS = 8


def backfill_request(hour: datetime) -> dict[str, Any]:
    """The body of Airflow's ``POST /api/v2/backfills`` that re-runs hour H's reconciliation.

    An hourly data-interval timetable yields the run whose interval starts at H for from_date = to_date = H;
    ``completed`` re-runs it although a run exists (the failed one).
    """
    stamp = paths.iso_hour(hour)
    return {
        "dag_id": RECONCILIATION_DAG_ID,
        "from_date": stamp,
        "to_date": stamp,
        "reprocess_behavior": "completed",
        "max_active_runs": 1,
    }


def _window_dict(window: paths.HourWindow) -> dict[str, Any]:
    return {
        "start": paths.iso_hour(window.start),
        "end": paths.iso_hour(window.end),
        "hours": len(window.hours()),
    }


def _keys_by_hour(lake: Lake, window: paths.HourWindow, day_prefix, expected_key) -> dict[datetime, str]:
    """Hour -> key for the hours whose exact expected key (report.json, manifest.json) is listed."""
    found = {}
    for obj in lake.objects_in_window(day_prefix, window):
        if obj.key == expected_key(obj.hour):
            found[obj.hour] = obj.key
    return found


def _read_checked_report(lake: Lake, key: str) -> tuple[dict | None, str | None]:
    try:
        return analytics.check_report(lake.read_json(key), lake.uri(key)), None
    except (LakeDataError, analytics.ReportShapeError) as exc:
        return None, str(exc)


def reconciliation_hours(lake: Lake, settings: Settings, window: paths.HourWindow) -> dict[str, Any]:
    """Every hour of the window, newest first: status, match rate, counts per cause, report, compaction."""
    reports = _keys_by_hour(
        lake,
        window,
        lambda day: paths.reports_day_prefix(settings, day),
        lambda hour: paths.report_key(settings, hour),
    )
    manifests = _keys_by_hour(
        lake,
        window,
        lambda day: paths.manifests_day_prefix(settings, day),
        lambda hour: paths.manifest_key(settings, hour),
    )
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        report_reads = {h: pool.submit(_read_checked_report, lake, k) for h, k in reports.items()}
        manifest_reads = {h: pool.submit(lake.read_json, k) for h, k in manifests.items()}
        hours = []
        for hour in reversed(window.hours()):
            report, problem = report_reads[hour].result() if hour in report_reads else (None, None)
            manifest = manifest_reads[hour].result() if hour in manifest_reads else None
            status = "invalid_report" if problem else analytics.hour_status(report)
            row: dict[str, Any] = {
                "hour": paths.iso_hour(hour),
                "status": status,
                "passed": report["passed"] if report else None,
                "match_rate": None,
                "counts": None,
                "totals": None,
                "report": None,
                "compaction": analytics.compaction_summary(manifest),
                "backfill": backfill_request(hour),
            }
            if hour in reports:
                key = reports[hour]
                row["report"] = {"key": key, "uri": lake.uri(key), "error": problem}
            if report is not None:
                row["match_rate"] = analytics.report_match_rate(report)
                row["counts"] = analytics.ordered_counts(report["counts"])
                row["totals"] = report.get("totals") if isinstance(report.get("totals"), dict) else None
            hours.append(row)
    return {
        "window": _window_dict(window),
        "bucket": lake.bucket,
        "reconciliation_dag_id": RECONCILIATION_DAG_ID,
        "causes": list(analytics.CAUSES),
        "summary": dict(Counter(h["status"] for h in hours)),
        "hours": hours,
    }


def report(lake: Lake, settings: Settings, hour: datetime, max_differences: int) -> dict[str, Any] | None:
    """Hour H's report.json as written, with at most ``max_differences`` differences; ``differences_total``
    counts them all (the report's own total when it lists only some)."""
    key = paths.report_key(settings, hour)
    body = lake.read_json(key)
    if body is None:
        return None
    body = analytics.check_report(body, lake.uri(key))
    differences = body.get("differences")
    if isinstance(differences, list):
        total = body.get("differences_total")
        total = total if isinstance(total, int) and total >= len(differences) else len(differences)
        shown = differences[:max_differences]
        body = {
            **body,
            "differences": shown,
            "differences_total": total,
            "differences_truncated": total > len(shown),
        }
    return {"key": key, "uri": lake.uri(key), "report": body}


def session_analytics(
    lake: Lake, settings: Settings, window: paths.HourWindow, max_objects: int
) -> dict[str, Any]:
    """Sessions per minute (stream vs batch), the stream's events per minute and both duration histograms."""
    minutes = analytics.minutes_of_window(window.start, window.end)
    budgets = {name: Budget(max_objects=max_objects) for name in ("stream", "batch", "metrics")}

    stream_starts, stream_durations = [], []
    for _, row in lake.rows_in_window(
        lambda day: paths.sink_day_prefix(settings, paths.SESSIONS_SINK, day), window, budgets["stream"]
    ):
        stream_starts.append(row.get("session_start"))
        stream_durations.append(int(row.get("duration_ms") or 0))

    batch_starts, batch_durations = [], []
    for _, row in lake.rows_in_window(
        lambda day: paths.batch_sessions_day_prefix(settings, day),
        window,
        budgets["batch"],
        parquet_columns=["session_start", "duration_ms"],
    ):
        batch_starts.append(row["session_start"])
        batch_durations.append(int(row["duration_ms"] or 0))

    events_by_minute: Counter[str] = Counter()
    progress = None
    for _, row in lake.rows_in_window(
        lambda day: paths.sink_day_prefix(settings, paths.METRICS_SINK, day), window, budgets["metrics"]
    ):
        events_by_minute[analytics.minute_of(row.get("window_start"))] += int(row.get("events") or 0)
        end = row.get("window_end")
        if isinstance(end, str) and (progress is None or end > progress):
            progress = end

    return {
        "window": _window_dict(window),
        "minutes": minutes,
        "stream_sessions": analytics.per_minute(minutes, stream_starts),
        "batch_sessions": analytics.per_minute(minutes, batch_starts),
        "stream_events": [events_by_minute.get(m, 0) for m in minutes],
        "durations": {
            "bins": [label for _, label in analytics.DURATION_BINS],
            "stream": analytics.duration_histogram(stream_durations),
            "batch": analytics.duration_histogram(batch_durations),
        },
        "totals": {
            "stream_sessions": len(stream_starts),
            "batch_sessions": len(batch_starts),
            "stream_events": sum(events_by_minute.values()),
        },
        "stream_progress": progress,
        "sources": {name: budget.to_dict() for name, budget in budgets.items()},
    }


def late_events(
    lake: Lake, settings: Settings, window: paths.HourWindow, limit: int, max_objects: int
) -> dict[str, Any]:
    """The newest ``limit`` rows of the stream's late-event ledger (by arrival), and how many the window has."""
    budget = Budget(max_objects=max_objects)
    rows = [
        row
        for _, row in lake.rows_in_window(
            lambda day: paths.sink_day_prefix(settings, paths.LATE_SINK, day), window, budget
        )
    ]
    rows.sort(key=lambda r: (str(r.get("arrival_time") or ""), str(r.get("event_id") or "")), reverse=True)
    shown = [
        {
            **row,
            "late_by_ms": analytics.ms_between(row.get("client_timestamp"), row.get("watermark_at")),
        }
        for row in rows[:limit]
    ]
    return {
        "window": _window_dict(window),
        "total": len(rows),
        "rows": shown,
        "sources": {"late_events": budget.to_dict()},
    }


def quarantine(lake: Lake, settings: Settings, window: paths.HourWindow, max_objects: int) -> dict[str, Any]:
    """Compaction's quarantine by reason (from the manifests) and the stream's rejected ledger by reason."""
    manifests = _keys_by_hour(
        lake,
        window,
        lambda day: paths.manifests_day_prefix(settings, day),
        lambda hour: paths.manifest_key(settings, hour),
    )
    compaction: Counter[str] = Counter()
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        for manifest in pool.map(lake.read_json, manifests.values()):
            by_reason = ((manifest or {}).get("counts") or {}).get("quarantined_by_reason") or {}
            compaction.update({str(reason): int(n) for reason, n in by_reason.items()})

    budget = Budget(max_objects=max_objects)
    stream: Counter[str] = Counter(
        str(row.get("reason"))
        for _, row in lake.rows_in_window(
            lambda day: paths.sink_day_prefix(settings, paths.REJECTED_SINK, day), window, budget
        )
    )
    return {
        "window": _window_dict(window),
        "compaction": {
            "by_reason": dict(compaction.most_common()),
            "total": sum(compaction.values()),
            "hours_compacted": len(manifests),
        },
        "stream_rejected": {"by_reason": dict(stream.most_common()), "total": sum(stream.values())},
        "sources": {"stream_rejected": budget.to_dict()},
    }


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return None if value is None else str(value)


def flink_status(kda_client: Any, settings: Settings) -> dict[str, Any]:
    """The Managed Flink application's status (DescribeApplication) and its newest snapshot."""
    name = settings.flink_app
    try:
        detail = kda_client.describe_application(ApplicationName=name)["ApplicationDetail"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return {
                "application": name,
                "status": "NOT_FOUND",
                "message": f"There is no Managed Flink application {name!r}: run the clickstream_setup DAG.",
            }
        raise
    snapshots = kda_client.list_application_snapshots(ApplicationName=name).get("SnapshotSummaries", [])
    newest = max(snapshots, key=lambda s: _iso(s.get("SnapshotCreationTimestamp")) or "", default=None)
    return {
        "application": name,
        "status": detail.get("ApplicationStatus"),
        "version": detail.get("ApplicationVersionId"),
        "runtime": detail.get("RuntimeEnvironment"),
        "arn": detail.get("ApplicationARN"),
        "created": _iso(detail.get("CreateTimestamp")),
        "updated": _iso(detail.get("LastUpdateTimestamp")),
        "snapshots": len(snapshots),
        "latest_snapshot": None
        if newest is None
        else {
            "name": newest.get("SnapshotName"),
            "status": newest.get("SnapshotStatus"),
            "created": _iso(newest.get("SnapshotCreationTimestamp")),
        },
    }

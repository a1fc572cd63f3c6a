"""The page's datasets against the seeded lake: each number recomputed from what the seed wrote."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from clickstream import analytics, data, paths
from clickstream.lake import Lake

from include.aws import client
from include.config import settings
from include.reconciliation import layout as reconciliation_layout

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lake(seeded) -> Lake:
    return Lake(client("s3"), settings().bucket)


@pytest.fixture(scope="module")
def window(seeded) -> paths.HourWindow:
    return paths.HourWindow.ending_at(seeded.window_end, 2)


def test_hours_show_each_reports_status_counts_and_match_rate(lake, window, seeded):
    result = data.reconciliation_hours(lake, settings(), window)
    by_hour = {h["hour"]: h for h in result["hours"]}
    assert list(by_hour) == [paths.iso_hour(seeded.failing_hour), paths.iso_hour(seeded.passing_hour)]
    assert result["summary"] == {"passed": 1, "failed": 1}
    for hour, expected_status in ((seeded.passing_hour, "passed"), (seeded.failing_hour, "failed")):
        report = seeded.reports[hour]
        row = by_hour[paths.iso_hour(hour)]
        assert report["status"] == expected_status, report["counts"]
        assert row["status"] == expected_status
        assert row["passed"] is report["passed"]
        assert {c: n for c, n in row["counts"].items() if n} == {
            c: n for c, n in report["counts"].items() if n
        }
        assert row["match_rate"] == pytest.approx(report["totals"]["match_rate"])
        assert row["report"]["key"] == reconciliation_layout.report_key(settings(), hour)
        assert row["compaction"]["written_rows"] > 0
        assert row["backfill"] == {
            "dag_id": data.RECONCILIATION_DAG_ID,
            "from_date": paths.iso_hour(hour),
            "to_date": paths.iso_hour(hour),
            "reprocess_behavior": "completed",
            "max_active_runs": 1,
        }
    failing = seeded.reports[seeded.failing_hour]["counts"]
    assert failing["missing_in_stream"] + failing["mismatch"] > 0, (
        "the outage must leave unexplained sessions"
    )
    assert seeded.reports[seeded.passing_hour]["counts"]["late"] > 0, "late events must be explained as late"


def test_hours_without_a_report_or_with_a_broken_one(lake, seeded, aws_clients):
    broken_hour = seeded.passing_hour - timedelta(hours=2)
    key = reconciliation_layout.report_key(settings(), broken_hour)
    s3 = aws_clients("s3")
    s3.put_object(
        Bucket=settings().bucket, Key=key, Body=json.dumps({"passed": "yes", "counts": {}}).encode()
    )
    try:
        window = paths.HourWindow.ending_at(seeded.passing_hour, 3)
        rows = {h["hour"]: h for h in data.reconciliation_hours(lake, settings(), window)["hours"]}
    finally:
        s3.delete_object(Bucket=settings().bucket, Key=key)
    broken = rows[paths.iso_hour(broken_hour)]
    assert broken["status"] == "invalid_report"
    assert "field 'passed' must be true or false, got 'yes'" in broken["report"]["error"]
    assert key in broken["report"]["error"]
    empty = rows[paths.iso_hour(seeded.passing_hour - timedelta(hours=1))]
    assert (empty["status"], empty["report"], empty["compaction"]) == ("not_reconciled", None, None)


def test_sessions_per_minute_and_durations_are_the_seeded_sessions(lake, window, seeded):
    result = data.session_analytics(lake, settings(), window, max_objects=100)
    minutes = result["minutes"]
    assert len(minutes) == 120 and minutes[0] == seeded.passing_hour.strftime("%Y-%m-%dT%H:00")
    stream = Counter(s["session_start"][:16] for s in seeded.stream.sessions)
    batch_rows = [s for rows in seeded.batch_sessions.values() for s in rows]
    batch = Counter(analytics.minute_of(s["session_start"]) for s in batch_rows)
    assert result["stream_sessions"] == [stream.get(m, 0) for m in minutes]
    assert result["batch_sessions"] == [batch.get(m, 0) for m in minutes]
    assert result["totals"]["stream_sessions"] == len(seeded.stream.sessions)
    assert result["totals"]["batch_sessions"] == len(batch_rows)
    # The outage removed stream sessions the batch still has.
    assert len(seeded.stream.sessions) < len(batch_rows)
    events = Counter()
    for row in seeded.stream.metrics:
        events[row["window_start"][:16]] += row["events"]
    assert result["stream_events"] == [events.get(m, 0) for m in minutes]
    assert result["stream_progress"] == max(r["window_end"] for r in seeded.stream.metrics)
    durations = result["durations"]
    assert sum(durations["stream"]) == len(seeded.stream.sessions)
    assert sum(durations["batch"]) == len(batch_rows)
    assert durations["stream"][0] == sum(1 for s in seeded.stream.sessions if s["duration_ms"] < 1_000)
    assert durations["bins"][0] == "< 1 s" and len(durations["bins"]) == len(durations["stream"])
    assert not any(source["truncated"] for source in result["sources"].values())


def test_a_small_read_budget_keeps_the_newest_hour_and_says_so(lake, window, seeded):
    result = data.session_analytics(lake, settings(), window, max_objects=1)
    newest = [
        s
        for s in seeded.stream.sessions
        if s["session_start"][:13] == seeded.failing_hour.strftime("%Y-%m-%dT%H")
    ]
    assert result["totals"]["stream_sessions"] == len(newest)
    assert result["sources"]["stream"] == {
        "objects_read": 1,
        "bytes_read": result["sources"]["stream"]["bytes_read"],
        "truncated": True,
        "objects_skipped": 1,
    }


def test_late_ledger_shows_the_newest_arrivals_first(lake, window, seeded):
    result = data.late_events(lake, settings(), window, limit=5, max_objects=100)
    assert result["total"] == len(seeded.stream.late) > 5
    newest = sorted(seeded.stream.late, key=lambda r: (r["arrival_time"], r["event_id"]), reverse=True)[:5]
    assert [r["event_id"] for r in result["rows"]] == [r["event_id"] for r in newest]
    for row in result["rows"]:
        assert row["late_by_ms"] == analytics.ms_between(row["client_timestamp"], row["watermark_at"]) > 0


def test_quarantine_by_reason_from_manifests_and_the_stream_ledger(lake, window, seeded):
    result = data.quarantine(lake, settings(), window, max_objects=100)
    assert result["compaction"]["by_reason"] == dict(seeded.quarantined_by_reason)
    assert result["compaction"]["hours_compacted"] == 2
    assert result["stream_rejected"]["by_reason"] == dict(
        Counter(r["reason"] for r in seeded.stream.rejected)
    )
    assert result["stream_rejected"]["total"] > 0


def test_flink_status_is_what_describe_application_says(seeded, aws_clients):
    result = data.flink_status(client("kinesisanalyticsv2"), settings())
    described = aws_clients("kinesisanalyticsv2").describe_application(ApplicationName=settings().flink_app)
    assert result["application"] == settings().flink_app
    assert result["status"] == described["ApplicationDetail"]["ApplicationStatus"]
    assert result["version"] == described["ApplicationDetail"]["ApplicationVersionId"]


def test_report_is_served_with_its_differences_capped(lake, seeded):
    found = data.report(lake, settings(), seeded.failing_hour, max_differences=2)
    written = seeded.reports[seeded.failing_hour]
    assert found["report"]["counts"] == written["counts"]
    assert found["report"]["differences"] == written["differences"][:2]
    assert found["report"]["differences_total"] == len(written["differences"]) > 2
    assert data.report(lake, settings(), seeded.failing_hour - timedelta(hours=5), 10) is None

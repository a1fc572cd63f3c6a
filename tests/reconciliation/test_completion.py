"""Which earlier hours a reconciliation run completes (``tasks.complete_earlier_hours``), read from the reports
the earlier runs published in S3 (moto); the reconciliation itself is ``test_classify`` and the DAG-level test's.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from include.config import Settings
from include.reconciliation import layout, tasks
from tests.moto_s3 import s3_with_bucket

CFG = Settings(bucket="lake", reconcile_complete_hours=3)
RUN = datetime(2026, 11, 27, 12, tzinfo=UTC)


def _report(deferred: int, extension: int, repair: dict | None = None) -> dict:
    return {
        "counts": {"matched": 5, "deferred": deferred},
        "window": {"extension_hours": extension},
        "repair": repair,
    }


def _summary(hour: datetime, status: str) -> dict:
    return {
        "hour": f"{hour:%Y-%m-%dT%H}:00:00.000Z",
        "status": status,
        "counts": {"matched": 5, "missing_in_stream": 3, "deferred": 0},
        "totals": {
            "batch_sessions": 8,
            "batch_events": 20,
            "stream_sessions": 5,
            "stream_events": 12,
            "match_rate": 0.625,
            "duplicate_rate": 0.0,
            "unexplained_sessions": 3 if status == "failed" else 0,
            "unexplained_events": 8 if status == "failed" else 0,
        },
        "thresholds": {"max_unexplained_share": 0.001},
        "repair": None,
        "links": {name: f"s3://lake/{name}" for name in ("report", "differences", "sessions")},
    }


@pytest.fixture
def lake(monkeypatch):
    """moto S3 with the earlier hours' reports; readiness and the reconciliation of an hour recorded, not run."""
    calls: dict[str, list] = {"readiness": [], "reconcile": [], "alerts": []}
    ready: set[datetime] = set()
    statuses: dict[datetime, str] = {}

    def readiness(hour, params, now=None, extension_hours=0):
        calls["readiness"].append((hour, extension_hours))
        return {"hour": f"{hour:%Y-%m-%dT%H}", "ready": hour in ready}

    def reconcile_interval(hour, params, extension_hours=None):
        calls["reconcile"].append((hour, extension_hours, params.repair))
        return _summary(hour, statuses.get(hour, "passed"))

    with s3_with_bucket(CFG.bucket) as s3:
        monkeypatch.setattr(tasks, "settings", lambda: CFG)
        monkeypatch.setattr("include.aws.client", lambda service: s3)
        monkeypatch.setattr(tasks, "readiness", readiness)
        monkeypatch.setattr(tasks, "reconcile_interval", reconcile_interval)
        monkeypatch.setattr(
            "include.callbacks.send_alert", lambda subject, text: calls["alerts"].append(subject)
        )

        def publish(hours_back: int, report: dict) -> datetime:
            hour = RUN - timedelta(hours=hours_back)
            s3.put_object(
                Bucket=CFG.bucket, Key=layout.report_key(CFG, hour), Body=json.dumps(report).encode()
            )
            return hour

        yield publish, ready, statuses, calls


def test_only_hours_with_open_sessions_not_yet_read_this_far_are_completed_oldest_first(lake):
    publish, ready, _, calls = lake
    waiting = publish(3, _report(deferred=2, extension=0))  # inputs not in yet
    repaired = publish(2, _report(deferred=1, extension=0, repair={"previous_status": "failed"}))
    publish(1, _report(deferred=1, extension=1))  # a rerun of H - 1 already read this far
    publish(4, _report(deferred=1, extension=0))  # more than K hours back: stays as it is
    ready.add(repaired)
    result = tasks.complete_earlier_hours(RUN, {})
    assert calls["readiness"] == [(waiting, 3), (repaired, 2)]
    # read up to this run's horizon, and a repaired hour stays repaired
    assert calls["reconcile"] == [(repaired, 2, True)]
    assert [s["hour"] for s in result["completed"]] == ["2026-11-27T10:00:00.000Z"]
    assert [w["hour"] for w in result["waiting"]] == ["2026-11-27T09"]
    assert calls["alerts"] == []


def test_nothing_to_complete_without_open_sessions(lake):
    publish, _, _, calls = lake
    publish(1, _report(deferred=0, extension=0))
    publish(2, _report(deferred=0, extension=0))
    assert tasks.complete_earlier_hours(RUN, {}) == {
        "run_hour": "2026-11-27T12",
        "completed": [],
        "waiting": [],
    }
    assert calls["readiness"] == calls["reconcile"] == []


def test_a_completed_hour_that_fails_alerts_after_every_hour_was_completed(lake):
    publish, ready, statuses, calls = lake
    failing = publish(2, _report(deferred=1, extension=0))
    passing = publish(1, _report(deferred=3, extension=0))
    ready.update({failing, passing})
    statuses[failing] = "failed"
    with pytest.raises(tasks.ReconciliationFailed) as failed:
        tasks.complete_earlier_hours(RUN, {})
    assert [call[0] for call in calls["reconcile"]] == [failing, passing]
    assert calls["alerts"] == ["[clickstream] reconciliation FAILED for hour 2026-11-27T10"]
    assert failed.value.alert_sent and "2026-11-27T10" in str(failed.value)

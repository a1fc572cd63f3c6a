"""What the ``clickstream_reconciliation`` DAG's tasks do, with Airflow-free signatures so tests can call them.

``params`` is the DAG run's params (a mapping, possibly partial) or a :class:`ReconcileParams`.

* :func:`readiness` — may hour H be reconciled yet? Every compacted hour it reads has its manifest, and the
  stream's progress marker has passed H's settle horizon (never compare sessions the stream has not closed).
* :func:`reconcile_interval` — download, reconcile, publish (sessions, differences, report last), register
  the hour's partition of the ``sessions`` table with its status; returns the summary (the asset event's extra).
* :func:`complete_earlier_hours` — republish the hours of the last K whose sessions were still open at their
  settle horizon, read up to this run's horizon (``CLICKSTREAM_RECONCILE_COMPLETE_HOURS``).
* :func:`check_hour` — a failed hour alerts (SNS) with its counts, report and the repair command, then raises.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from include.compaction.layout import normalize_hour
from include.config import settings
from include.reconciliation import layout
from include.reconciliation.params import ReconcileParams

log = logging.getLogger(__name__)

Params = ReconcileParams | Mapping[str, Any] | None
DAG_ID = "clickstream_reconciliation"


class ReconciliationFailed(RuntimeError):
    """The hour failed its reconciliation; the message holds the alert's text. ``alert_sent`` tells the
    failure callback the alert is out already."""

    def __init__(self, subject: str, message: str, alert_sent: bool = False) -> None:
        super().__init__(message)
        self.subject = subject
        self.alert_sent = alert_sent


def _options(cfg, p: ReconcileParams, extension_hours: int = 0):
    from include.reconciliation.options import ReconcileOptions

    return ReconcileOptions.from_settings(
        cfg, stream_started_at=p.stream_started(), extension_hours=extension_hours
    )


def readiness(
    hour_start: datetime, params: Params = None, now: datetime | None = None, extension_hours: int = 0
) -> dict[str, Any]:
    """Whether hour H's inputs are complete (for its horizon extended by ``extension_hours``), and if not, what is
    missing (the sensor logs it)."""
    from include.aws import client
    from include.compaction.manifest import read_manifest
    from include.reconciliation.options import HourWindow
    from include.reconciliation.progress import stream_progress

    p, cfg, s3 = ReconcileParams.coerce(params), settings(), client("s3")
    hour = normalize_hour(hour_start, "hour_start")
    window = HourWindow.of(hour, _options(cfg, p, extension_hours))
    now = now or datetime.now(UTC)
    missing = [
        f"{h:%Y-%m-%dT%H}"
        for h in window.event_hours()
        if read_manifest(s3, cfg.bucket, h, settings=cfg) is None
    ]
    started = p.stream_started()
    waits_for_stream = p.wait_for_stream and not (
        started is not None and started >= hour + timedelta(hours=1)
    )
    marker = stream_progress(s3, cfg.bucket, cfg, window.horizon, now) if waits_for_stream else None
    stream_ready = not waits_for_stream or (marker is not None and marker >= window.horizon)
    return {
        "hour": f"{hour:%Y-%m-%dT%H}",
        "ready": not missing and stream_ready,
        "missing_manifests": missing,
        "settle_horizon": window.horizon.isoformat(),
        "waits_for_stream": waits_for_stream,
        "stream_progress": marker.isoformat() if marker else None,
    }


def _previous_report(s3, bucket: str, key: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def asset_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The ``clickstream_sessions`` asset event's extra for a published hour."""
    return {
        "hour": summary["hour"],
        "status": summary["status"],
        "counts": summary["counts"],
        "totals": summary["totals"],
        "report": summary["links"]["report"],
    }


def summary_lines(summary: Mapping[str, Any]) -> str:
    """The short human summary the task logs and the alert repeats."""
    counts = summary["counts"]
    t = summary["totals"]
    lines = [
        f"hour {summary['hour']}: {summary['status'].upper()}",
        "  counts: " + ", ".join(f"{cause} {n}" for cause, n in counts.items()),
        f"  match rate {t['match_rate']:.4%}; batch {t['batch_sessions']} sessions / {t['batch_events']} events; "
        f"stream {t['stream_sessions']} sessions / {t['stream_events']} events; "
        f"duplicate rate {t['duplicate_rate']:.4%}; unexplained {t['unexplained_sessions']} sessions / "
        f"{t['unexplained_events']} events",
    ]
    if summary.get("repair"):
        r = summary["repair"]
        lines.append(
            f"  repaired by batch: {r['repaired_by_batch']} sessions {r['repaired_by_cause']} "
            f"(previous status {r['previous_status']})"
        )
    lines += [f"  {name}: {summary['links'][name]}" for name in ("report", "differences", "sessions")]
    return "\n".join(lines)


def _ready_extension(hour: datetime, params: ReconcileParams, limit: int) -> int:
    """The largest extension in [0, limit] whose inputs are all in (0 when none is)."""
    return next((k for k in range(limit, 0, -1) if readiness(hour, params, extension_hours=k)["ready"]), 0)


def _reconcile_at(s3, cfg, p: ReconcileParams, hour: datetime, work: str, extension: int):
    """The hour's inputs for its horizon extended by ``extension`` hours, downloaded under ``work``, reconciled."""
    from include.reconciliation.reconcile import reconcile_hour
    from include.reconciliation.s3_io import download_hour_inputs

    options = _options(cfg, p, extension)
    inputs = download_hour_inputs(s3, cfg.bucket, cfg, hour, f"{work}/in-{extension}", options)
    return reconcile_hour(hour, inputs, options)


def reconcile_interval(
    hour_start: datetime, params: Params = None, extension_hours: int | None = None
) -> dict[str, Any]:
    """Reconcile hour H from S3, publish its files and its ``sessions`` partition; the summary of the run.

    ``extension_hours`` None (the hour's own run): read to H's settle horizon and, when sessions are still open
    there, as far past it as the inputs are in (at most ``reconcile_complete_hours``), so a rerun of a past
    hour publishes its completed sessions. A number: read to that extension of the horizon.
    """
    from include.aws import client
    from include.reconciliation.catalog import ensure_sessions_partition, partition_parameters
    from include.reconciliation.repair import apply_repair
    from include.reconciliation.s3_io import publish_hour

    p, cfg, s3 = ReconcileParams.coerce(params), settings(), client("s3")
    hour = normalize_hour(hour_start, "hour_start")
    previous = _previous_report(s3, cfg.bucket, layout.report_key(cfg, hour))
    with tempfile.TemporaryDirectory(prefix="clickstream-reconcile-") as work:
        result = _reconcile_at(s3, cfg, p, hour, work, extension_hours or 0)
        if extension_hours is None and result.report.counts.get("deferred"):
            if ready := _ready_extension(hour, p, cfg.reconcile_complete_hours):
                result = _reconcile_at(s3, cfg, p, hour, work, ready)
        result.report = apply_repair(result.report, previous, p.repair)
        links = publish_hour(s3, cfg.bucket, cfg, hour, result, work)
    report = result.report.to_dict()
    partition = ensure_sessions_partition(
        client("glue"), cfg.glue_database, hour, partition_parameters(report, links["report"])
    )
    b, s = report["totals"]["batch"], report["totals"]["stream"]
    summary = {
        "hour": report["hour"],
        "status": report["status"],
        "passed": report["passed"],
        "counts": report["counts"],
        "totals": {
            "batch_sessions": b["sessions"],
            "batch_events": b["events"],
            "stream_sessions": s["sessions"],
            "stream_events": s["events"],
            "match_rate": report["totals"]["match_rate"],
            "duplicate_rate": b["duplicate_rate"],
            "unexplained_sessions": report["totals"]["unexplained_sessions"],
            "unexplained_events": report["totals"]["unexplained_events"],
        },
        "thresholds": {"max_unexplained_share": report["thresholds"]["max_unexplained_share"]},
        "repair": report["repair"],
        "previous_status": previous.get("status") if previous else None,
        "links": links,
        "sessions_partition": partition,
        "stages_s": result.stages,
    }
    log.info("reconciliation of %s\n%s", report["hour"], summary_lines(summary))
    return summary


def complete_earlier_hours(run_hour: datetime, params: Params = None) -> dict[str, Any]:
    """Republish each of the K hours before ``run_hour`` whose report still has sessions open at its horizon,
    read up to this run's horizon (the run waited for its inputs: H - k's extension k ends where H's horizon
    does). Oldest first; an hour repaired before stays repaired. Returns the completed hours' summaries and the
    readiness of those whose inputs are not in; a completed hour that fails alerts, and ReconciliationFailed is
    raised once every hour was completed."""
    from include.aws import client

    p, cfg, s3 = ReconcileParams.coerce(params), settings(), client("s3")
    run_hour = normalize_hour(run_hour, "run_hour")
    completed, waiting, failures = [], [], []
    for back in range(cfg.reconcile_complete_hours, 0, -1):
        hour = run_hour - timedelta(hours=back)
        report = _previous_report(s3, cfg.bucket, layout.report_key(cfg, hour))
        if not report or not report["counts"].get("deferred"):
            continue
        if report["window"].get("extension_hours", 0) >= back:
            continue  # already read this far (a rerun of the hour itself, or a later run)
        # the hour's own repair state, not this run's: a repair of H says nothing about H - k
        hour_params = dataclasses.replace(p, repair=bool(report.get("repair")))
        state = readiness(hour, hour_params, extension_hours=back)
        if not state["ready"]:
            log.warning(
                "hour %s keeps open sessions: inputs not in for %d more hours: %s", state["hour"], back, state
            )
            waiting.append(state)
            continue
        summary = reconcile_interval(hour, hour_params, extension_hours=back)
        completed.append(summary)
        try:
            check_hour(summary)
        except ReconciliationFailed as exc:
            failures.append(exc)
    result = {"run_hour": f"{run_hour:%Y-%m-%dT%H}", "completed": completed, "waiting": waiting}
    if failures:
        raise ReconciliationFailed(
            failures[0].subject, "\n\n".join(str(f) for f in failures), all(f.alert_sent for f in failures)
        )
    return result


def repair_command(hour: str) -> str:
    """The backfill that repairs ``hour`` (``2026-11-24T09:00:00.000Z``) once the stream is fixed."""
    start = datetime.fromisoformat(hour.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return (
        f"airflow backfill create --dag-id {DAG_ID} --from-date {start} --to-date {start} "
        "--reprocess-behavior failed --dag-run-conf '{\"repair\": true}'"
    )


def failure_alert(summary: Mapping[str, Any]) -> tuple[str, str]:
    """Subject and text of a failed hour's alert: counts, report location, and what to do."""
    counts = summary["counts"]
    hour = summary["hour"]
    t = summary["totals"]
    subject = f"[clickstream] reconciliation FAILED for hour {hour[:13]}"
    share = summary["thresholds"]["max_unexplained_share"]
    message = (
        f"The reconciliation of hour {hour} failed: {t['unexplained_sessions']} sessions / "
        f"{t['unexplained_events']} events are unexplained (allowed: {share:.3%} of "
        f"{t['batch_sessions']} batch sessions).\n\n" + summary_lines(summary) + "\n\nWhat the causes mean:\n"
        f"  missing_in_stream {counts.get('missing_in_stream', 0)}: the stream has no session where the batch "
        "has one (the Flink application was down or restarted without its snapshot)\n"
        f"  missing_in_batch {counts.get('missing_in_batch', 0)}: the stream has a session the batch lacks "
        "(raw data lost before compaction)\n"
        f"  mismatch {counts.get('mismatch', 0)}: both have it but they differ beyond late, duplicate and "
        "rule differences (see differences.parquet)\n\n"
        "What to do:\n"
        "  1. Read the differences (s3 link above) and the Flink application's state "
        "(clickstream_flink_lifecycle, clickstream_flink_watchdog).\n"
        "  2. Fix the stream (e.g. trigger clickstream_flink_lifecycle with action=start).\n"
        "  3. The hour's batch sessions are already published in the `sessions` table. Once the stream is "
        "fixed, record the repair with a backfill of the hour:\n"
        f"     {repair_command(hour)}\n"
    )
    return subject, message


def check_hour(summary: Mapping[str, Any], alert: bool = True) -> dict[str, Any]:
    """Pass through a passed/batch_only/repaired hour; alert on a failed one and raise ReconciliationFailed."""
    if summary["status"] != "failed":
        return {"hour": summary["hour"], "status": summary["status"]}
    subject, message = failure_alert(summary)
    sent = False
    if alert:
        from include.callbacks import send_alert

        try:
            send_alert(subject, message)
            sent = True
        except Exception:  # noqa: BLE001 - the failure below must happen even when SNS is unreachable
            log.exception("could not publish the reconciliation alert %r", subject)
    raise ReconciliationFailed(subject, message, alert_sent=sent)

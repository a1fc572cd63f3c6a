"""``make demo``: the pipeline end to end on this machine, through Airflow, against the local AWS endpoint.

The demo hour H is two hours back (the last complete hour the reconciliation can settle):

1. starts the local endpoint (moto + companion) unless it is already up, and migrates Airflow's metadata DB;
2. runs ``clickstream_setup``, then ``clickstream_flink_lifecycle`` (start: the companion runs the real Flink
   SQL in PyFlink, restoring the snapshot of the previous demo's stop if there is one);
3. runs ``clickstream_producer`` for the last ``--minutes`` minutes of H (a small backfill), plus one quiet
   minute just past H's settle horizon, so the stream's watermark passes it as continuous traffic would;
4. waits until Firehose has delivered every produced record;
5. runs ``clickstream_compaction`` for H and the hours H's reconciliation reads (H - 1, H + 1);
6. waits until the Flink job has written every session the watermark has closed, checked session by session
   against the reference sessionizer over the produced events, then stops the application with a snapshot;
7. reconciles H (streamed vs batch sessions, every difference explained) and publishes its report;
8. writes the analytics report (HTML + PNGs) from what is in S3.

The terminal shows one line per stage; Airflow's task logs and all other output go to the log file printed at
the start (``-v`` streams it too). Any discrepancy (a failed run, a missing or different session, a failed
hour) is shown in red and the demo exits with status 1. Everything runs through real DAG runs
(``dag.test()``) except the reconciliation, which calls :mod:`include.reconciliation` in-process until its DAG
exists. The endpoint keeps running afterwards so the data can be explored (``make down`` stops it).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import math
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localdev import airflow_env as local_airflow
from localdev.demo_console import DemoConsole, StageFailed, first_line

DEMO_BUFFER_SECONDS = "5"
#: Commit the Flink sinks every few seconds (AWS default: 60 s) so the sessions show up while you watch.
DEMO_FLINK_CHECKPOINT_MS = "5000"
DEMO_FLINK_ROLLOVER = "5 s"
DEMO_DIR = local_airflow.REPO / ".local" / "demo"
LOG_PATH = DEMO_DIR / "demo.log"
#: The quiet minute past the settle horizon: few events, only to move the stream's watermark.
HEARTBEAT_EVENTS_PER_SECOND = 2.0


def _s3(url: str):
    from localdev.aws.clients import local_client

    return local_client("s3", url)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass
class DemoRun:
    """What the stages found: the summary table's rows."""

    hour: datetime
    sent: int = 0
    by_kind: Counter = field(default_factory=Counter)
    valid_events: int = 0
    raw_objects: int = 0
    raw_records: int = 0
    raw_errors: Counter = field(default_factory=Counter)
    compaction: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    stream_sessions: int = 0
    stream_checked: int = 0
    late_events: int = 0
    rejected_records: int = 0
    reconciliation: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    report_html: Path | None = None
    report_charts: int = 0
    batch_sessions: int | None = None
    failures: list[str] = field(default_factory=list)


def _raw_inventory(s3, bucket: str) -> tuple[dict[str, list[int]], Counter, set[str], set[bytes]]:
    """Per raw partition: [objects, records]; error records by type; event_ids and error payloads seen."""
    partitions: dict[str, list[int]] = {}
    errors: Counter = Counter()
    ids: set[str] = set()
    error_payloads: set[bytes] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            lines = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).splitlines()
            if key.startswith("raw/errors/"):
                errors[key.split("/")[2]] += len(lines)
                error_payloads.update(base64.b64decode(json.loads(line)["rawData"]) for line in lines)
                continue
            part = key.rsplit("/", 1)[0] + "/"
            stats = partitions.setdefault(part, [0, 0])
            stats[0] += 1
            stats[1] += len(lines)
            for line in lines:
                try:
                    ids.add(json.loads(line)["event_id"])
                except (ValueError, KeyError, TypeError):
                    pass
    return partitions, errors, ids, error_payloads


class Demo:
    """The stages, in order; each reports through one :class:`Stage` line of the console."""

    def __init__(self, args: argparse.Namespace, ui: DemoConsole) -> None:
        from include.config import settings
        from include.reconciliation import HourWindow, ReconcileOptions

        self.args = args
        self.ui = ui
        self.settings = settings()
        self.bucket = self.settings.bucket
        self.options = ReconcileOptions.from_settings(self.settings)
        settle = timedelta(minutes=self.options.settle_minutes)
        # H such that every hour its reconciliation reads, heartbeat minute included, is complete.
        lag_hours = 1 + math.ceil((settle + timedelta(minutes=2)) / timedelta(hours=1))
        now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.hour = now_hour - timedelta(hours=lag_hours)
        self.window = HourWindow.of(self.hour, self.options)
        self.heartbeat_end = self.window.horizon + timedelta(minutes=2)
        self.params = {
            "users": args.users,
            "events_per_second": args.events_per_second,
            "seed": args.seed,
            "duplicate_fraction": 0.02,
            "malformed_fraction": 0.01,
        }
        self.run = DemoRun(hour=self.hour)
        self.s3 = None

    # -- stages ------------------------------------------------------------------------------------------
    def start(self) -> None:
        env = local_airflow.local_env(
            port=self.args.port,
            extra={
                "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS": DEMO_BUFFER_SECONDS,
                "CLICKSTREAM_RETRY_DELAY_SECONDS": "2",
                "CLICKSTREAM_FLINK_CHECKPOINT_MS": DEMO_FLINK_CHECKPOINT_MS,
                "CLICKSTREAM_FLINK_ROLLOVER": DEMO_FLINK_ROLLOVER,
            },
        )
        local_airflow.apply(env)
        with self.ui.stage("Airflow metadata DB") as stage:
            local_airflow.migrate_db(env)
            stage.done(f"migrated (AIRFLOW_HOME {_relative(Path(env['AIRFLOW_HOME']))})")

        from localdev.aws import LocalEndpoint

        with self.ui.stage("Local AWS endpoint") as stage:
            endpoint = LocalEndpoint(port=self.args.port, state_dir=local_airflow.REPO / ".local" / "aws")
            endpoint.start()
            self.s3 = _s3(endpoint.url)
            stage.done(f"{endpoint.url} (moto on :{endpoint.moto_url.rsplit(':', 1)[-1]})")

    def setup(self) -> None:
        with self.ui.stage("clickstream_setup") as stage:
            stage.progress("creating the stream, buckets, catalog, Firehose, Flink app …")
            run = local_airflow.run_dag("clickstream_setup")
            summary = local_airflow.task_result(run, "summary") or {}
            self.ui.log(f"clickstream_setup: {run.state}; {summary}")
            if run.state != "success":
                raise stage.fail(f"{run.state}: {local_airflow.task_states(run)}")
            counts = Counter(summary.values())
            stage.done(", ".join(f"{n} {what}" for what, n in sorted(counts.items())) + " resources")

    def lifecycle(self, action: str, title: str) -> None:
        with self.ui.stage(title) as stage:
            stage.progress(f"clickstream_flink_lifecycle action={action}")
            run = local_airflow.run_dag("clickstream_flink_lifecycle", conf={"action": action})
            states = local_airflow.task_states(run)
            done = sorted(task for task, state in states.items() if state == "success" and task != "choose")
            self.ui.log(f"clickstream_flink_lifecycle {action}: {run.state} {states}")
            if run.state != "success":
                raise stage.fail(f"clickstream_flink_lifecycle {action}: {run.state} {states}")
            stage.done(f"clickstream_flink_lifecycle {action}: {', '.join(done)}")

    def _intervals(self) -> list[tuple[datetime, datetime, dict[str, Any]]]:
        """(start, end, params) of each producer run: the last minutes of H, then the heartbeat minute."""
        hour_end = self.hour + timedelta(hours=1)
        runs = [
            (hour_end - timedelta(minutes=i), hour_end - timedelta(minutes=i - 1), self.params)
            for i in range(self.args.minutes, 0, -1)
        ]
        heartbeat = dict(self.params, events_per_second=HEARTBEAT_EVENTS_PER_SECOND)
        runs.append((self.heartbeat_end - timedelta(minutes=1), self.heartbeat_end, heartbeat))
        return runs

    def produce(self) -> list[Any]:
        from include.compaction.layout import manifest_key
        from include.producer import ProducerParams, generate

        intervals = self._intervals()
        if self._exists(manifest_key(self.settings, self.hour)):
            self.ui.print(
                f"  note: an earlier demo run already replayed {self.hour:%H}:00, so its events are sent again: "
                "compaction removes the copies and the stream emits the same sessions again",
                style="dim",
            )
        with self.ui.stage("Producer", total=len(intervals)) as stage:
            for i, (start, end, params) in enumerate(intervals):
                stage.progress(f"clickstream_producer [{start:%H:%M}, {end:%H:%M})", completed=i)
                run = local_airflow.run_dag("clickstream_producer", logical_date=end, conf=params)
                report = local_airflow.task_result(run, "produce") or {}
                self.ui.log(
                    f"clickstream_producer [{start:%H:%M}, {end:%H:%M}): {run.state}, sent {report.get('sent')} "
                    f"records {report.get('by_kind', '')}"
                )
                if run.state != "success":
                    raise stage.fail(f"clickstream_producer [{start:%H:%M}, {end:%H:%M}): {run.state}")
                self.run.sent += report.get("sent", 0)
                self.run.by_kind.update(report.get("by_kind", {}))
            stage.progress("", completed=len(intervals))
            truth = [generate(ProducerParams.from_dict(p), start, end) for start, end, p in intervals]
            first = intervals[0][0]
            stage.done(
                f"{self.run.sent:,} records for {first:%H:%M}–{self.hour + timedelta(hours=1):%H:%M} + 1 quiet "
                f"minute at {self.heartbeat_end - timedelta(minutes=1):%H:%M} (past the settle horizon)"
            )
        return truth

    def wait_for_firehose(self, truth: list[Any]) -> None:
        from include.compaction.layout import raw_hour_prefix

        wanted = {e["event_id"] for batch in truth for e in batch.valid_events()}
        self.run.valid_events = len(wanted)
        with self.ui.stage("Firehose → raw/", total=len(wanted)) as stage:
            deadline = time.monotonic() + 120
            while True:
                partitions, errors, ids, _ = _raw_inventory(self.s3, self.bucket)
                stage.progress("valid events delivered", completed=len(ids & wanted))
                if wanted <= ids or time.monotonic() > deadline:
                    break
                time.sleep(2)
            for part, (objects, records) in sorted(partitions.items()):
                self.ui.log(f"  s3://{self.bucket}/{part}  {objects} objects, {records} records")
            self.run.raw_objects, self.run.raw_records = partitions.get(
                raw_hour_prefix(self.settings, self.hour), (0, 0)
            )
            self.run.raw_errors = errors
            missing = len(wanted - ids)
            if missing:
                raise stage.fail(
                    f"{missing} of {len(wanted)} valid events MISSING from s3://{self.bucket}/raw/"
                )
            stage.done(
                f"{len(wanted):,} of {len(wanted):,} valid events delivered; hour {self.hour:%H}: "
                f"{self.run.raw_objects} objects; {sum(errors.values())} records in raw/errors/"
            )

    def compact(self) -> None:
        hours = self.window.event_hours()
        with self.ui.stage("Compaction", total=len(hours)) as stage:
            for i, hour in enumerate(hours):
                stage.progress(f"clickstream_compaction {hour:%H}:00", completed=i)
                run = local_airflow.run_dag(
                    "clickstream_compaction",
                    logical_date=hour + timedelta(hours=1),
                    # The hours have ended and Firehose has delivered (checked above): no need to wait.
                    conf={"allowed_lateness_seconds": 0, "firehose_buffer_seconds": int(DEMO_BUFFER_SECONDS)},
                )
                result = local_airflow.task_result(run, "compact") or {}
                self.ui.log(f"clickstream_compaction {hour:%Y-%m-%d %H}:00: {run.state} {result}")
                if run.state != "success":
                    raise stage.fail(f"clickstream_compaction {hour:%H}:00: {local_airflow.task_states(run)}")
                self.run.compaction[hour] = result
            main = self.run.compaction[self.hour]
            others = ", ".join(
                f"{h:%H}:00 {r['written_rows']}" for h, r in self.run.compaction.items() if h != self.hour
            )
            stage.done(
                f"{self.hour:%H}:00: {main['lines_read']:,} raw → {main['written_rows']:,} rows "
                f"({main['duplicates_removed']} duplicates, {main['quarantined']} quarantined); {others} rows"
            )

    def check_sessions(self, truth: list[Any], timeout_s: float = 180) -> None:
        """Wait for the closed sessions of this run's records in the stream's sink; each must equal the reference."""
        from include.sessions.contract import SessionContract
        from localdev.reference import check_records, closed_sessions

        records = [rec.data.decode(errors="replace") for batch in truth for rec in batch.records]
        contract = SessionContract()
        checked = check_records(records, contract, now_ms=int(time.time() * 1000))
        wanted = {s["session_id"]: s for s in closed_sessions(checked.events, contract)}
        with self.ui.stage("Streamed sessions", total=len(wanted)) as stage:
            deadline = time.monotonic() + timeout_s
            while True:
                got = {r["session_id"]: r for r in self._sink_rows("sessions")}
                stage.progress(
                    "closed sessions in streaming/sessions/", completed=len(set(wanted) & set(got))
                )
                if set(wanted) <= set(got) or time.monotonic() > deadline:
                    break
                time.sleep(3)
            missing = set(wanted) - set(got)
            fields = (
                "user_id",
                "device_id",
                "session_start",
                "last_event_at",
                "event_count",
                "first_event",
                "last_event",
            )
            differ = [
                sid for sid in set(wanted) - missing if any(got[sid][f] != wanted[sid][f] for f in fields)
            ]
            # Known engine difference (docs/sessions.md): invalid UTF-8 becomes replacement characters.
            utf8 = [
                sid
                for sid in differ
                if all(got[sid][f] == wanted[sid][f] or "\ufffd" in str(wanted[sid][f]) for f in fields)
            ]
            differ = [sid for sid in differ if sid not in utf8]
            for sid in sorted(set(wanted) - missing, key=lambda k: -wanted[k]["event_count"])[:3]:
                row = got[sid]
                self.ui.log(
                    f"  user {row['user_id']} {row['device_id']:<7} {row['session_start']} → "
                    f"{row['last_event_at']}  {row['event_count']} events, {row['first_event']} … "
                    f"{row['last_event']} ({row['countrycode']})"
                )
            hour_prefix = self.hour.strftime("%Y-%m-%dT%H")
            self.run.stream_sessions = sum(
                1 for r in got.values() if r["session_start"].startswith(hour_prefix)
            )
            self.run.stream_checked = len(set(wanted) - missing)
            self.run.late_events = len(self._sink_rows("late_events"))
            rejected = Counter(r["reason"] for r in self._sink_rows("rejected_events"))
            self.run.rejected_records = sum(rejected.values())
            self.ui.log(
                f"per-minute metrics rows: {len(self._sink_rows('metrics'))}, late events: {self.run.late_events}, "
                f"rejected records: {self.run.rejected_records} (the reference rejects {len(checked.rejected)} "
                "of this run's records)"
            )
            problems = []
            if missing:
                problems.append(f"{len(missing)} of {len(wanted)} closed sessions MISSING")
            if differ:
                problems.append(f"{len(differ)} DIFFER from the reference (e.g. {sorted(differ)[:3]})")
            if problems:
                raise stage.fail("; ".join(problems))
            note = (
                f" ({len(utf8)} differ only in replaced invalid UTF-8, see docs/sessions.md)" if utf8 else ""
            )
            stage.done(
                f"{len(wanted):,} of {len(wanted):,} closed sessions, all equal to the reference{note}"
            )

    def _exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
        except self.s3.exceptions.ClientError:
            return False
        return True

    def _sink_rows(self, name: str) -> list[dict]:
        rows = []
        prefix = f"{self.settings.streaming_prefix}{name}/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                if not obj["Key"].rsplit("/", 1)[-1].startswith((".", "_")):
                    body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read().decode()
                    rows.extend(json.loads(line) for line in body.splitlines() if line.strip())
        return rows

    def reconcile(self) -> None:
        """Reconcile H from S3 and publish its report (the clickstream_reconciliation DAG's job, once it exists)."""
        from include.reconciliation import STATUS_FAILED, reconcile_hour
        from include.reconciliation.s3_io import download_hour_inputs, publish_hour

        with self.ui.stage(f"Reconciliation {self.hour:%H}:00") as stage:
            with tempfile.TemporaryDirectory(prefix="clickstream-demo-reconcile-") as work:
                stage.progress("reading compacted hours and the stream's outputs")
                inputs = download_hour_inputs(
                    self.s3, self.bucket, self.settings, self.hour, work, self.options
                )
                stage.progress("batch sessions and classification")
                result = reconcile_hour(self.hour, inputs, self.options)
                urls = publish_hour(self.s3, self.bucket, self.settings, self.hour, result, work)
            report = result.report
            self.ui.log(report.summary())
            self.ui.log(f"reconciliation published: {urls}")
            self.run.reconciliation[self.hour] = report.to_dict()
            self.run.batch_sessions = report.totals["batch"]["sessions"]
            counts = ", ".join(f"{cause} {n}" for cause, n in report.counts.items() if n)
            line = f"{report.status.upper()}: {counts}; match rate {report.totals['match_rate']:.2%}"
            if report.status == STATUS_FAILED:
                self.run.failures.append(f"hour {report.hour} failed its reconciliation: {urls['report']}")
                stage.warn(line)
            else:
                stage.done(line)

    def analytics_report(self) -> None:
        from localdev.report import DEFAULT_OUTPUT, build_report

        with self.ui.stage("Analytics report") as stage:
            stage.progress("reading S3 and drawing the charts")
            files = build_report(self.s3, self.bucket, self.settings, [self.hour], DEFAULT_OUTPUT)
            self.run.report_html = files.html
            self.run.report_charts = len(files.pngs)
            if self.run.batch_sessions is None and "sessions_per_minute" in {
                c.name for c in files.analytics.charts
            }:
                # No reconciliation: the report recomputed the batch sessions from the compacted events.
                self.run.batch_sessions = sum(files.analytics.chart("sessions_per_minute").column("batch"))
            stage.done(f"{len(files.pngs)} charts → {_relative(files.html)}")

    def run_all(self) -> DemoRun:
        self.start()
        self.setup()
        self.lifecycle("start", "Flink app start")
        truth = self.produce()
        self.wait_for_firehose(truth)
        self.compact()
        self.check_sessions(truth)
        # Stopping with a snapshot commits every sink file, so the reconciliation reads complete ledgers.
        self.lifecycle("stop", "Flink app stop (snapshot)")
        self.reconcile()
        self.analytics_report()
        return self.run


def summary_table(run: DemoRun, log_path: Path):
    """The closing table: what was produced, landed, compacted, streamed, reconciled, and where to look next."""
    from rich.table import Table

    table = Table(title=f"Demo hour {run.hour:%Y-%m-%d %H}:00 UTC", title_justify="left", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    malformed = sum(n for kind, n in run.by_kind.items() if kind not in ("valid", "duplicate", "late"))
    table.add_row(
        "events produced",
        f"{run.sent:,} records: {run.valid_events:,} valid events, {run.by_kind.get('duplicate', 0)} duplicates, "
        f"{malformed} malformed",
    )
    table.add_row(
        "raw objects",
        f"{run.raw_objects} objects, {run.raw_records:,} records in raw/events/ for the hour; "
        f"{sum(run.raw_errors.values())} in raw/errors/ {dict(run.raw_errors) or ''}".rstrip(),
    )
    main = run.compaction.get(run.hour, {})
    table.add_row(
        "compacted rows",
        f"{main.get('written_rows', 0):,} ({main.get('duplicates_removed', 0)} duplicates removed)",
    )
    quarantined = main.get("quarantined_by_reason", {})
    table.add_row(
        "quarantined",
        f"{main.get('quarantined', 0)}: " + ", ".join(f"{k} {v}" for k, v in sorted(quarantined.items())),
    )
    table.add_row(
        "stream sessions",
        f"{run.stream_sessions:,} started in the hour; {run.late_events} late events, "
        f"{run.rejected_records} records rejected by the stream",
    )
    table.add_row("batch sessions", f"{run.batch_sessions:,}" if run.batch_sessions is not None else "—")
    for hour, report in sorted(run.reconciliation.items()):
        counts = ", ".join(f"{cause} {n}" for cause, n in report["counts"].items() if n)
        style = "red" if report["status"] == "failed" else "green"
        table.add_row(
            f"reconciliation {hour:%H}:00",
            f"[{style}]{report['status']}[/]: {counts} (match rate {report['totals']['match_rate']:.2%})",
        )
    if run.report_html is not None:
        table.add_row("analytics report", f"{_relative(run.report_html)} ({run.report_charts} charts)")
    table.add_row("log", _relative(log_path))
    table.add_row(
        "next",
        "`make up`: the Airflow UI on http://127.0.0.1:8080 (Clickstream page, DAG runs)\n"
        "`python -m localdev.report --port 4566`: the report again, over every hour in the lake\n"
        "`make down`: stop the local endpoint and the metadata DB",
    )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=local_airflow.DEFAULT_PORT)
    parser.add_argument("--minutes", type=int, default=5, help="producer intervals to run (default 5)")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--events-per-second", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also stream the log file to the terminal"
    )
    args = parser.parse_args(argv)

    started = time.monotonic()
    with DemoConsole(LOG_PATH, verbose=args.verbose) as ui:
        ui.print(
            f"[bold]clickstream demo[/] — Airflow task logs and everything else: {_relative(LOG_PATH)}"
            + ("" if args.verbose else " (-v streams them here)")
        )
        demo = None
        try:
            demo = Demo(args, ui)
            ui.print(
                f"demo hour {demo.hour:%Y-%m-%d %H}:00 UTC: its last {args.minutes} minutes, replayed now "
                f"(the hour's reconciliation reads up to {demo.window.horizon:%H:%M})",
                style="dim",
            )
            run = demo.run_all()
        except StageFailed:
            ui.print(f"[bold red]demo failed[/] at the stage marked ✗; details: {_relative(LOG_PATH)}")
            return 1
        except KeyboardInterrupt:
            ui.print("[yellow]interrupted[/]; the endpoint keeps running (`make down` stops it)")
            return 130
        except Exception as exc:  # the traceback goes to the log, one line to the terminal
            traceback.print_exc()
            ui.print(
                f"[bold red]demo failed:[/] {type(exc).__name__}: {first_line(str(exc))}\n"
                f"  traceback and output: {_relative(LOG_PATH)}"
            )
            return 1
        ui.print()
        ui.print(summary_table(run, LOG_PATH))
        elapsed = time.monotonic() - started
        if run.failures:
            for failure in run.failures:
                ui.print(f"[bold red]✗[/] {failure}")
            ui.print(f"finished in {elapsed:.0f} s with findings (exit status 1)")
            return 1
        ui.print(f"[green]done[/] in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make demo``: the pipeline end to end on this machine, through Airflow, against the local AWS endpoint.

Two past hours are replayed (their last minutes), A then B = A + 1 h, the latest pair the reconciliation can
settle. The reconciliation's settle minutes are shortened to 2 for the demo (``DEMO_SETTLE_MINUTES``):

1. starts the local endpoint (moto + companion) unless it is already up and, at the same time, PostgreSQL and
   Airflow (``airflow db migrate`` only when the schema is not at the installed Airflow's head; this process
   meanwhile loads Airflow, builds the in-process execution API and parses the DAGs);
2. runs ``clickstream_setup`` (the Flink app starts from LATEST when it starts without a snapshot), then
   ``clickstream_flink_lifecycle`` start without a snapshot (the job reads only this run's records);
3. runs ``clickstream_producer`` minute by minute: hour A with late and duplicate events (and malformed
   records), a quiet minute at A's settle horizon, then hour B: two minutes, a **forced stop** of the Flink app
   (no snapshot: its open sessions are lost), two minutes while it is stopped, a restart without the snapshot
   (from LATEST: the stopped minutes are never read), two more minutes and two quiet minutes past B's horizon;
4. waits until Firehose has delivered every produced record, then runs ``clickstream_compaction`` for every
   hour the two reconciliations read;
5. waits for the stream's progress marker past B's settle horizon, stops the app with a snapshot;
6. runs ``clickstream_reconciliation`` for A (must pass, every difference explained), for B (must fail with
   ``missing_in_stream``: its SNS alert is read back from the SQS inbox and shown), then the repair run of B
   (``{"repair": true}``, what the alert tells the operator to run) which must report B ``repaired``;
7. writes the analytics report (HTML + PNGs) of both hours from what is in S3.

Demo-only timings: 2 s checkpoints, a 5 s Firehose buffer, 2 s pokes of the lifecycle sensors, and the
modules of the later stages (compaction, DuckDB, matplotlib) imported in the background while the Flink app
starts.

The terminal shows one line per stage; Airflow's task logs and all other output go to the log file printed at
the start (``-v`` streams it too). Any unexpected outcome (a failed run, a failing hour A, a hour B that does
not fail the expected way or is not repaired) is shown in red and the demo exits with status 1. The endpoint
keeps running afterwards so the data can be explored (``make down`` stops it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localdev import airflow_env as local_airflow
from localdev.demo_console import DemoConsole, StageFailed, first_line

DEMO_BUFFER_SECONDS = "5"
#: Commit the Flink sinks every 2 s (AWS default: 60 s) so the sessions show up while you watch: the app turns
#: RUNNING at its first checkpoint, and the waits for the stream's progress marker end one checkpoint after
#: the marker moved (measured: the wait for A's horizon took 6-10 s with 5 s checkpoints, 0.2-2.7 s with 2 s).
DEMO_FLINK_CHECKPOINT_MS = "2000"
DEMO_FLINK_ROLLOVER = "2 s"
#: The reconciliation's settle minutes L (production: 30): two past hours can then be reconciled minutes after
#: they end, and the quiet minutes that move the stream past a horizon are few.
DEMO_SETTLE_MINUTES = 2
DEMO_DIR = local_airflow.REPO / ".local" / "demo"
LOG_PATH = DEMO_DIR / "demo.log"
#: The quiet minutes past a settle horizon: few events, only to move the stream's watermark.
QUIET_EVENTS_PER_SECOND = 2.0
#: Hour A's injected faults: late events (sent 30 s after their time, past the stream's watermark) and
#: duplicates, on top of the malformed records every demo minute carries.
HOUR_A_FAULTS = {"late_fraction": 0.05, "late_delay_seconds": 30.0, "duplicate_fraction": 0.05}
RECONCILIATION_DAG = "clickstream_reconciliation"
#: The lifecycle DAG's completion sensors poke every 5 s (what AWS needs); the demo pokes the local app every
#: 2 s, so a start or stop is seen about a second after it happened on average. Not 1 s: each in-process poke
#: is a task run (0.7-1.1 s of this process's CPU measured under load), which the starting JVM needs.
DEMO_SENSOR_POKE_SECONDS = 2
#: How often the demo's own waits (Firehose delivery, the stream's progress marker) look at S3.
POLL_SECONDS = 0.5
#: Imported in the background while the Flink app starts (the main thread mostly waits then), so the
#: compaction, reconciliation and report stages do not pay for them (about 10 s on this machine).
PRELOADED_MODULES = (
    "include.compaction.fast_path",
    "include.compaction.tasks",
    "pyarrow.parquet",
    "pandas",  # pyarrow's Table.from_pylist imports it on first use (3 s here)
    "duckdb",
    "include.reconciliation.tasks",
    "include.reconciliation.reconcile",
    "localdev.report",
    "localdev.report.charts",
)
UNEXPLAINED = ("missing_in_stream", "missing_in_batch", "mismatch")


def _s3(url: str):
    from localdev.aws.clients import local_client

    return local_client("s3", url)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Background(threading.Thread):
    """Run ``work`` on a thread now; :meth:`result` joins it and returns its value or raises its exception."""

    def __init__(self, name: str, work: Callable[[], Any]) -> None:
        super().__init__(name=f"demo-{name}", daemon=True)
        self._work = work
        self._value: Any = None
        self._error: BaseException | None = None
        self.seconds = 0.0  # how long ``work`` took, once it has finished
        self.start()

    def run(self) -> None:
        started = time.monotonic()
        try:
            self._value = self._work()
        except BaseException as exc:  # handed to the caller of result()
            self._error = exc
        finally:
            self.seconds = time.monotonic() - started

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def schema_revision(url: str) -> str | None:
    """The Alembic revision of the metadata DB at ``url``; None when it has no Airflow schema (a new cluster)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no database or no alembic_version table yet
        return None
    finally:
        engine.dispose()


def airflow_schema_head() -> str | None:
    """The Alembic head revision of the installed Airflow, from Airflow's own version → head map.

    Loading Alembic's script directory instead (what ``airflow db check-migrations`` does) takes about 6 s
    here; the map is what ``airflow db migrate --to-version`` uses. None when it cannot be read, so the caller
    migrates.
    """
    try:
        from airflow import __version__
        from airflow.utils.db import _REVISION_HEADS_MAP
        from packaging.version import Version
    except ImportError:
        return None
    installed = Version(__version__)
    known = [Version(v) for v in _REVISION_HEADS_MAP if Version(v) <= installed]
    return _REVISION_HEADS_MAP[str(max(known))] if known else None


def warm_up_dag_runs() -> None:
    """What the first in-process DAG run would otherwise build: the in-process execution API, the DagBag.

    The API answers its first request only after Cadwyn has generated the routers of every Execution API
    version (about 10 s of CPU here, measured with cProfile); a health check pays for that now, while
    ``airflow db migrate`` and the endpoint's processes start, instead of inside the first task.
    """
    import httpx
    from airflow.sdk.execution_time.supervisor import in_process_api_server

    api = in_process_api_server()  # cached: the one every in-process task of this process talks to
    httpx.Client(transport=api.transport, base_url="http://in-process.invalid./").get("health")
    local_airflow.load_dag("clickstream_setup")
    import include.producer  # noqa: F401  (imported by every producer stage below)


def preload(modules: tuple[str, ...], log: Callable[[str], None]) -> None:
    import importlib

    started = time.monotonic()
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the stage that needs it imports it again and reports the error
            log(f"preloading {name} failed: {type(exc).__name__}: {exc}")
    log(f"preloaded {', '.join(modules)} in {time.monotonic() - started:.1f} s")


@dataclass
class HourResult:
    """One replayed hour: what the story expects of it and what its reconciliation runs reported."""

    hour: datetime
    story: str
    reports: list[dict[str, Any]] = field(default_factory=list)  # report.json of each run, in order
    alert: str | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.reports[-1] if self.reports else {}


@dataclass
class DemoRun:
    """What the stages found: the summary table's rows."""

    hours: dict[str, HourResult]
    sent: int = 0
    by_kind: Counter = field(default_factory=Counter)
    valid_events: int = 0
    raw_objects: int = 0
    raw_records: int = 0
    raw_errors: Counter = field(default_factory=Counter)
    compaction: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    stream_sessions: int = 0
    late_events: int = 0
    rejected_records: int = 0
    stopped_minutes: tuple[datetime, datetime] | None = None
    report_html: Path | None = None
    report_charts: int = 0
    failures: list[str] = field(default_factory=list)


class RawInventory:
    """raw/ as Firehose delivered it: objects and records per partition, error records by type, event_ids.

    Each :meth:`refresh` reads only the objects it has not read yet (Firehose never rewrites a key), so
    polling while Firehose delivers costs one listing per poll, not a re-read of every earlier run's objects.
    """

    def __init__(self, s3, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.partitions: dict[str, list[int]] = {}
        self.errors: Counter = Counter()
        self.ids: set[str] = set()
        self._read: set[str] = set()

    def refresh(self) -> RawInventory:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="raw/"):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if key not in self._read:
                    self._add(key)
                    self._read.add(key)
        return self

    def _add(self, key: str) -> None:
        lines = gzip.decompress(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()).splitlines()
        if key.startswith("raw/errors/"):
            self.errors[key.split("/")[2]] += len(lines)
            return
        stats = self.partitions.setdefault(key.rsplit("/", 1)[0] + "/", [0, 0])
        stats[0] += 1
        stats[1] += len(lines)
        for line in lines:
            try:
                self.ids.add(json.loads(line)["event_id"])
            except (ValueError, KeyError, TypeError):
                pass


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{cause} {n}" for cause, n in counts.items() if n)


def _minute_runs(
    start: datetime, minutes: int, params: dict[str, Any]
) -> list[tuple[datetime, datetime, dict]]:
    return [(start + timedelta(minutes=i), start + timedelta(minutes=i + 1), params) for i in range(minutes)]


class Demo:
    """The stages, in order; each reports through one :class:`Stage` line of the console."""

    def __init__(self, args: argparse.Namespace, ui: DemoConsole) -> None:
        # A deployment setting read by settings() in this process and in every in-process DAG run.
        os.environ["CLICKSTREAM_RECONCILE_SETTLE_MINUTES"] = str(DEMO_SETTLE_MINUTES)
        from include.config import settings
        from include.reconciliation import ReconcileOptions

        self.args = args
        self.ui = ui
        self.settings = settings()
        self.bucket = self.settings.bucket
        self.options = ReconcileOptions.from_settings(self.settings)
        # Until choose_hours(): B is the latest hour whose next hour has ended (its compaction waits for the
        # hour's end) and whose quiet minutes past the settle horizon are in the past.
        now_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self._set_hours(now_hour - timedelta(hours=2))
        self.params = {
            "users": args.users,
            "events_per_second": args.events_per_second,
            "seed": args.seed,
            "duplicate_fraction": 0.02,
            "malformed_fraction": 0.01,
        }
        self.quiet = dict(self.params, events_per_second=QUIET_EVENTS_PER_SECOND, duplicate_fraction=0.0)
        self.run = DemoRun(hours={})
        self.truth: list[Any] = []
        self.job_started = datetime.now(UTC)
        self.s3 = None
        self.endpoint_url = ""
        self._metrics_read: set[str] = set()
        self._marker: datetime | None = None

    def _set_hours(self, hour_b: datetime) -> None:
        from include.reconciliation import HourWindow

        self.hour_b = hour_b
        self.hour_a = hour_b - timedelta(hours=1)
        self.window_a = HourWindow.of(self.hour_a, self.options)
        self.window_b = HourWindow.of(self.hour_b, self.options)

    def _stream_has(self, hour: datetime) -> bool:
        prefix = f"{self.settings.streaming_prefix}sessions/dt={hour:%Y-%m-%d}/hr={hour:%H}/"
        return bool(self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"))

    def choose_hours(self) -> None:
        """Step back two hours at a time past hours an earlier demo (or `make up`) already streamed: the stream
        appends, so an hour replayed twice holds two runs' sessions and its reconciliation would compare both."""
        first = self.hour_b
        # The late and rejected ledgers are read up to reconcile_ledger_hours arrival hours after A.
        oldest = first - timedelta(hours=self.settings.reconcile_ledger_hours - 4)
        while self._stream_has(self.hour_a) or self._stream_has(self.hour_b):
            if self.hour_a - timedelta(hours=2) < oldest:
                raise RuntimeError(
                    f"every hour pair back to {oldest:%Y-%m-%d %H}:00 was replayed by earlier demos; start "
                    "over with `make down` and `rm -rf .local/aws` (the local endpoint's state)"
                )
            self._set_hours(self.hour_b - timedelta(hours=2))
        if self.hour_b != first:
            self.ui.print(
                f"  note: earlier demo runs already streamed the hours from {self.hour_b + timedelta(hours=1):%H}:00 "
                f"to {first:%H}:00; an hour is replayed only once, so this run takes the hours before them",
                style="dim",
            )
        self.run.hours = {
            "A": HourResult(self.hour_a, "late + duplicate events: must pass, every difference explained"),
            "B": HourResult(self.hour_b, "Flink app force-stopped: must fail, alert, then be repaired"),
        }
        self.ui.print(
            f"demo hours A {self.hour_a:%Y-%m-%d %H}:00 and B {self.hour_b:%H}:00 UTC: their last minutes, "
            f"replayed now (settle minutes {DEMO_SETTLE_MINUTES}: B's reconciliation reads up to "
            f"{self.window_b.horizon:%H:%M})",
            style="dim",
        )

    # -- stages ------------------------------------------------------------------------------------------
    def start(self) -> None:
        env = local_airflow.local_env(
            port=self.args.port,
            extra={
                "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS": DEMO_BUFFER_SECONDS,
                "CLICKSTREAM_RETRY_DELAY_SECONDS": "2",
                "CLICKSTREAM_FLINK_CHECKPOINT_MS": DEMO_FLINK_CHECKPOINT_MS,
                "CLICKSTREAM_FLINK_ROLLOVER": DEMO_FLINK_ROLLOVER,
                # Without a snapshot the app reads only what arrives after its start, so a restart without
                # the snapshot never reads the minutes it was stopped for (the outage of hour B).
                "CLICKSTREAM_FLINK_SOURCE_INIT_POSITION": "LATEST",
                "CLICKSTREAM_RECONCILE_SETTLE_MINUTES": str(DEMO_SETTLE_MINUTES),
            },
        )
        local_airflow.apply(env)
        from localdev.aws import LocalEndpoint

        # The endpoint's processes start, and `airflow db migrate` runs in its own process when the schema
        # is not at Airflow's head, while this process loads Airflow and builds what its first DAG run needs.
        with self.ui.stage("Metadata DB + endpoint") as stage:
            endpoint = LocalEndpoint(port=self.args.port, state_dir=local_airflow.REPO / ".local" / "aws")
            started = time.monotonic()
            steps: list[str] = []

            def step(what: str) -> None:
                steps.append(f"{what} +{time.monotonic() - started:.1f} s")

            endpoint_started = Background("endpoint", endpoint.start)
            stage.progress("PostgreSQL")
            cluster = local_airflow.metadata_db(env).start()
            revision = schema_revision(cluster.url())
            step(f"PostgreSQL up (schema {revision})")
            # Airflow is imported here before `airflow db migrate` imports it: on a fresh clone the first import
            # compiles every module's bytecode, which two processes importing at once would both do.
            stage.progress("loading Airflow")
            head = airflow_schema_head()
            step("Airflow imported")
            migration = None
            if head is None or revision != head:
                migration = Background("migrate", lambda: local_airflow.migrate_db(env))
            stage.progress("in-process execution API, DAGs" + (", migrating the schema" if migration else ""))
            warm_up_dag_runs()
            step("execution API and DAGs ready")
            if migration is not None:
                migration.result()
                step(f"airflow db migrate done (took {migration.seconds:.1f} s)")
            schema = f"schema {'migrated to' if migration else 'already at'} {head or 'head'}"
            self.ui.log(f"metadata DB {cluster.url()}: {schema} (was {revision})")
            stage.progress("local AWS endpoint")
            endpoint_started.result()
            step(f"endpoint ready (took {endpoint_started.seconds:.1f} s)")
            self.ui.log("start-up: " + "; ".join(steps))
            self.endpoint_url = endpoint.url
            self.s3 = _s3(endpoint.url)
            stage.done(
                f"{schema} (AIRFLOW_HOME {_relative(Path(env['AIRFLOW_HOME']))}); {endpoint.url} "
                f"(moto on :{endpoint.moto_url.rsplit(':', 1)[-1]})"
            )

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

    def lifecycle(self, title: str, **conf: Any) -> None:
        dag = local_airflow.load_dag("clickstream_flink_lifecycle")
        for sensor in ("wait_until_running", "wait_until_stopped"):
            dag.get_task(sensor).poke_interval = DEMO_SENSOR_POKE_SECONDS
        with self.ui.stage(title) as stage:
            stage.progress(f"clickstream_flink_lifecycle {conf}")
            run = local_airflow.run_dag("clickstream_flink_lifecycle", conf=conf)
            states = local_airflow.task_states(run)
            done = sorted(task for task, state in states.items() if state == "success" and task != "choose")
            self.ui.log(f"clickstream_flink_lifecycle {conf}: {run.state} {states}")
            if run.state != "success":
                raise stage.fail(f"clickstream_flink_lifecycle {conf}: {run.state} {states}")
            shown = " ".join(f"{k}={v}" for k, v in conf.items())
            stage.done(f"clickstream_flink_lifecycle {shown}: {', '.join(done)}")

    def produce(self, title: str, runs: list[tuple[datetime, datetime, dict[str, Any]]], what: str) -> None:
        """One clickstream_producer run per minute (a small backfill); the sent records join the truth."""
        from include.producer import ProducerParams, generate

        with self.ui.stage(title, total=len(runs)) as stage:
            sent = 0
            for i, (start, end, params) in enumerate(runs):
                stage.progress(f"clickstream_producer [{start:%H:%M}, {end:%H:%M})", completed=i)
                run = local_airflow.run_dag("clickstream_producer", logical_date=end, conf=params)
                report = local_airflow.task_result(run, "produce") or {}
                self.ui.log(
                    f"clickstream_producer [{start:%H:%M}, {end:%H:%M}) {params}: {run.state}, sent "
                    f"{report.get('sent')} records {report.get('by_kind', '')}"
                )
                if run.state != "success":
                    raise stage.fail(f"clickstream_producer [{start:%H:%M}, {end:%H:%M}): {run.state}")
                sent += report.get("sent", 0)
                self.run.by_kind.update(report.get("by_kind", {}))
                self.truth.append(generate(ProducerParams.from_dict(params), start, end))
            stage.progress("", completed=len(runs))
            self.run.sent += sent
            stage.done(f"{sent:,} records, {runs[0][0]:%H:%M}–{runs[-1][1]:%H:%M}: {what}")

    def _progress_since(self, since: datetime) -> datetime | None:
        """The stream's progress marker (largest committed metrics window_end, include.reconciliation.progress)
        counting only files committed since ``since``: the marker is global, and an earlier demo's later hours
        would otherwise say that this run's older hours are settled before they are. A committed part file
        never changes, so each is read once (``self._metrics_read``)."""
        from include.reconciliation import layout
        from include.reconciliation.progress import METRICS, _parse

        prefix = f"{self.settings.streaming_prefix}{METRICS}/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if (
                    key in self._metrics_read
                    or obj["LastModified"] < since
                    or not layout.is_committed_part(key)
                ):
                    continue
                self._metrics_read.add(key)
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
                for line in body.splitlines():
                    if line.strip():
                        end = _parse(json.loads(line)["window_end"])
                        if self._marker is None or end > self._marker:
                            self._marker = end
        return self._marker

    def wait_for_progress(self, horizon: datetime, title: str, timeout_s: float = 180) -> datetime:
        """Until this run's job has committed metrics up to ``horizon`` (the reconciliation's readiness rule)."""
        with self.ui.stage(title) as stage:
            deadline = time.monotonic() + timeout_s
            while True:
                marker = self._progress_since(self.job_started)
                stage.progress(
                    f"progress marker {marker:%H:%M} of {horizon:%H:%M}" if marker else "no marker yet"
                )
                if marker is not None and marker >= horizon:
                    break
                if time.monotonic() > deadline:
                    raise stage.fail(
                        f"the stream's progress marker is {marker} after {timeout_s:.0f} s, not past {horizon:%H:%M}"
                    )
                time.sleep(POLL_SECONDS)
            stage.done(f"metrics committed up to {marker:%H:%M} (≥ settle horizon {horizon:%H:%M})")
            return marker

    def wait_for_firehose(self) -> None:
        from include.compaction.layout import raw_hour_prefix

        wanted = {e["event_id"] for batch in self.truth for e in batch.valid_events()}
        self.run.valid_events = len(wanted)
        with self.ui.stage("Firehose → raw/", total=len(wanted)) as stage:
            deadline = time.monotonic() + 120
            raw = RawInventory(self.s3, self.bucket)
            while True:
                raw.refresh()
                stage.progress("valid events delivered", completed=len(raw.ids & wanted))
                if wanted <= raw.ids or time.monotonic() > deadline:
                    break
                time.sleep(POLL_SECONDS)
            partitions, errors, ids = raw.partitions, raw.errors, raw.ids
            for part, (objects, records) in sorted(partitions.items()):
                self.ui.log(f"  s3://{self.bucket}/{part}  {objects} objects, {records} records")
            for hour in (self.hour_a, self.hour_b):
                objects, records = partitions.get(raw_hour_prefix(self.settings, hour), (0, 0))
                self.run.raw_objects += objects
                self.run.raw_records += records
            self.run.raw_errors = errors
            missing = len(wanted - ids)
            if missing:
                raise stage.fail(
                    f"{missing} of {len(wanted)} valid events MISSING from s3://{self.bucket}/raw/"
                )
            stage.done(
                f"{len(wanted):,} of {len(wanted):,} valid events delivered; hours A and B: "
                f"{self.run.raw_objects} objects; {sum(errors.values())} records in raw/errors/"
            )

    def compact(self) -> None:
        hours = sorted(set(self.window_a.event_hours()) | set(self.window_b.event_hours()))
        with self.ui.stage("Compaction", total=len(hours)) as stage:
            for i, hour in enumerate(hours):
                stage.progress(f"clickstream_compaction {hour:%H}:00", completed=i)
                run = local_airflow.run_dag(
                    "clickstream_compaction",
                    logical_date=hour + timedelta(hours=1),
                    # The hours have ended and Firehose has delivered (checked above): no need to wait.
                    conf={"allowed_lateness_seconds": 0},
                )
                result = local_airflow.task_result(run, "compact") or {}
                self.ui.log(f"clickstream_compaction {hour:%Y-%m-%d %H}:00: {run.state} {result}")
                if run.state != "success":
                    raise stage.fail(f"clickstream_compaction {hour:%H}:00: {local_airflow.task_states(run)}")
                self.run.compaction[hour] = result
            stage.done(
                "; ".join(
                    f"{h:%H}:00 {r['written_rows']:,} rows ({r['duplicates_removed']} dup, {r['quarantined']} quar.)"
                    for h, r in self.run.compaction.items()
                )
            )

    def stream_outputs(self) -> None:
        """The stream's sinks, for the summary (the reconciliation compares them session by session)."""
        prefixes = tuple(f"{h:%Y-%m-%dT%H}" for h in (self.hour_a, self.hour_b))
        self.run.stream_sessions = sum(
            1 for r in self._sink_rows("sessions") if r["session_start"].startswith(prefixes)
        )
        self.run.late_events = len(self._sink_rows("late_events"))
        self.run.rejected_records = len(self._sink_rows("rejected_events"))

    def _sink_rows(self, name: str) -> list[dict]:
        rows = []
        prefix = f"{self.settings.streaming_prefix}{name}/"
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                if not obj["Key"].rsplit("/", 1)[-1].startswith((".", "_")):
                    body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read().decode()
                    rows.extend(json.loads(line) for line in body.splitlines() if line.strip())
        return rows

    def _reconcile_run(self, hour: datetime, conf: dict[str, Any] | None):
        """One clickstream_reconciliation run of ``hour``, and the report.json it published."""
        from include.reconciliation import layout

        # dag.test() of Airflow 3.3.2 cannot run a DAG declaring a deadline alert (docs/reconciliation.md);
        # deadlines are the scheduler's job, so the in-process run leaves it out.
        dag = local_airflow.load_dag(RECONCILIATION_DAG)
        saved, dag.deadline = dag.deadline, None
        try:
            run = local_airflow.run_dag(RECONCILIATION_DAG, logical_date=hour + timedelta(hours=1), conf=conf)
        finally:
            dag.deadline = saved
        states = local_airflow.task_states(run)
        self.ui.log(f"{RECONCILIATION_DAG} {hour:%Y-%m-%dT%H} {conf or ''}: {run.state} {states}")
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=layout.report_key(self.settings, hour))["Body"]
            report = json.loads(body.read())
        except self.s3.exceptions.NoSuchKey:
            report = {}
        self.ui.log(
            f"report of {hour:%Y-%m-%dT%H}: status {report.get('status')} counts {report.get('counts')}"
        )
        return run, states, report

    def _alert_inbox(self) -> tuple[Any, str]:
        from localdev.aws.clients import local_client

        sqs = local_client("sqs", self.endpoint_url)
        return sqs, sqs.get_queue_url(QueueName=self.settings.alert_queue)["QueueUrl"]

    @staticmethod
    def _receive(sqs, url: str, wait_s: int = 0) -> list[str]:
        bodies = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_s)
            if not got.get("Messages"):
                return bodies
            for message in got["Messages"]:
                bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            wait_s = 0

    def reconcile_a(self) -> None:
        hour = self.run.hours["A"]
        with self.ui.stage(f"Reconciliation A {hour.hour:%H}:00") as stage:
            stage.progress(
                f"{RECONCILIATION_DAG} (wait_for_inputs → reconcile → check, complete_earlier_hours)"
            )
            run, states, report = self._reconcile_run(hour.hour, None)
            hour.reports.append(report)
            line = (
                f"{report.get('status', '?').upper()}: {_counts_text(report.get('counts', {}))}; match rate "
                f"{report.get('totals', {}).get('match_rate', 0):.2%}"
            )
            if run.state != "success" or report.get("status") != "passed":
                self.run.failures.append(
                    f"hour A {hour.hour:%H}:00 was expected to pass: {run.state} {states}"
                )
                raise stage.fail(f"UNEXPECTED {line}")
            stage.done(line)

    def reconcile_b(self) -> None:
        hour = self.run.hours["B"]
        sqs, inbox = self._alert_inbox()
        self._receive(sqs, inbox)  # older alerts (earlier runs) are not this run's
        with self.ui.stage(f"Reconciliation B {hour.hour:%H}:00") as stage:
            stage.progress(
                f"{RECONCILIATION_DAG} (wait_for_inputs → reconcile → check, complete_earlier_hours)"
            )
            run, states, report = self._reconcile_run(hour.hour, None)
            hour.reports.append(report)
            counts = report.get("counts", {})
            line = f"{report.get('status', '?').upper()}: {_counts_text(counts)}"
            expected = (
                run.state == "failed"
                and states.get("check") == "failed"
                and report.get("status") == "failed"
                and counts.get("missing_in_stream", 0) > 0
                and counts.get("missing_in_batch", 0) == 0
            )
            if not expected:
                raise stage.fail(
                    f"UNEXPECTED (expected failed with missing_in_stream > 0 and no missing_in_batch): {line} "
                    f"{run.state} {states}"
                )
            stage.warn(f"{line} — expected: the app was down {self._stopped_text()}")
        with self.ui.stage("Alert (SNS → SQS inbox)") as stage:
            stage.progress(f"reading {self.settings.alert_queue}")
            deadline = time.monotonic() + 20
            alerts: list[str] = []
            while not alerts and time.monotonic() < deadline:
                alerts = self._receive(sqs, inbox, wait_s=1)
            if not alerts:
                raise stage.fail(f"no alert in the SQS queue {self.settings.alert_queue} within 20 s")
            hour.alert = alerts[0]
            self.ui.log("alert received:\n" + "\n".join(alerts))
            stage.done(f"{len(alerts)} message: {first_line(alerts[0], 110)}")
        self._show_alert(hour.alert)

    def _show_alert(self, text: str) -> None:
        from rich.panel import Panel

        keep = [
            line
            for line in text.splitlines()
            if line.startswith(
                ("The reconciliation", "hour ", "  counts", "  report", "     airflow backfill")
            )
        ]
        self.ui.print(Panel("\n".join(keep), title="alert received", border_style="yellow", expand=False))

    def repair_b(self) -> None:
        hour = self.run.hours["B"]
        with self.ui.stage(f"Repair run B {hour.hour:%H}:00") as stage:
            stage.progress(f'{RECONCILIATION_DAG} with {{"repair": true}} (the command the alert gives)')
            run, states, report = self._reconcile_run(hour.hour, {"repair": True})
            hour.reports.append(report)
            repair = report.get("repair") or {}
            if run.state != "success" or report.get("status") != "repaired":
                raise stage.fail(f"UNEXPECTED: {run.state} {states}; status {report.get('status')}")
            stage.done(
                f"REPAIRED (was {repair.get('previous_status')}): {repair.get('repaired_by_batch')} sessions "
                f"stand in from the batch ({_counts_text(repair.get('repaired_by_cause', {}))})"
            )

    def _stopped_text(self) -> str:
        if self.run.stopped_minutes is None:
            return ""
        start, end = self.run.stopped_minutes
        return f"{start:%H:%M}–{end:%H:%M}"

    def analytics_report(self) -> None:
        from localdev.report import DEFAULT_OUTPUT, build_report

        with self.ui.stage("Analytics report") as stage:
            stage.progress("reading S3 and drawing the charts")
            files = build_report(
                self.s3, self.bucket, self.settings, [self.hour_a, self.hour_b], DEFAULT_OUTPUT
            )
            self.run.report_html = files.html
            self.run.report_charts = len(files.pngs)
            stage.done(f"{len(files.pngs)} charts → {_relative(files.html)}")

    def run_all(self) -> DemoRun:
        self.start()
        self.setup()
        self.choose_hours()
        a, b = self.hour_a, self.hour_b
        # A fresh job (from LATEST: only this run's records): replayed hours never meet an earlier run's
        # session state, and a snapshot of an older job version cannot block the start.
        self.job_started = datetime.now(UTC) - timedelta(seconds=2)  # S3 LastModified has whole seconds
        preloaded = Background("preload", lambda: preload(PRELOADED_MODULES, self.ui.log))
        self.lifecycle("Flink app start", action="start", restore="SKIP_RESTORE_FROM_SNAPSHOT")
        hour_a_params = dict(self.params, **HOUR_A_FAULTS)
        self.produce(
            f"Producer A {a:%H}:00",
            _minute_runs(a + timedelta(minutes=57), 3, hour_a_params)
            + _minute_runs(self.window_a.horizon, 1, self.quiet),
            f"late + duplicate events, 1 quiet minute at A's horizon {self.window_a.horizon:%H:%M}",
        )
        stop_at = b + timedelta(minutes=56)
        self.produce(
            f"Producer B {b:%H}:00", _minute_runs(b + timedelta(minutes=54), 2, self.params), "app running"
        )
        # A is settled in the stream (its sessions and the marker committed) before the outage starts.
        self.wait_for_progress(self.window_a.horizon, "Stream past A's horizon")
        self.lifecycle("Flink app FORCE stop", action="stop", force=True)
        self.run.stopped_minutes = (stop_at, stop_at + timedelta(minutes=2))
        self.produce(
            f"Producer B {b:%H}:00 (app down)",
            _minute_runs(stop_at, 2, self.params),
            "the stream never reads these",
        )
        self.lifecycle("Flink app restart", action="start", restore="SKIP_RESTORE_FROM_SNAPSHOT")
        self.produce(
            f"Producer B {b:%H}:00 (restarted)",
            _minute_runs(stop_at + timedelta(minutes=2), 2, self.params)
            + _minute_runs(self.window_b.horizon, 2, self.quiet),
            f"2 quiet minutes from B's horizon {self.window_b.horizon:%H:%M}",
        )
        self.wait_for_firehose()
        preloaded.result()
        self.compact()
        self.wait_for_progress(self.window_b.horizon + timedelta(minutes=1), "Stream past B's horizon")
        # Stopping with a snapshot commits every sink file, so the reconciliation reads complete ledgers.
        self.lifecycle("Flink app stop (snapshot)", action="stop")
        self.stream_outputs()
        self.reconcile_a()
        self.reconcile_b()
        self.repair_b()
        self.analytics_report()
        return self.run


def summary_table(run: DemoRun, log_path: Path):
    """The closing table: what was produced, landed, compacted, streamed, reconciled, and where to look next."""
    from rich.table import Table

    hours = sorted(h.hour for h in run.hours.values())
    table = Table(
        title=f"Demo hours {', '.join(f'{h:%H}:00' for h in hours)} UTC ({hours[0]:%Y-%m-%d})",
        title_justify="left",
        show_header=False,
    )
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    malformed = sum(n for kind, n in run.by_kind.items() if kind not in ("valid", "duplicate", "late"))
    table.add_row(
        "events produced",
        f"{run.sent:,} records: {run.valid_events:,} valid events ({run.by_kind.get('late', 0)} late), "
        f"{run.by_kind.get('duplicate', 0)} duplicates, {malformed} malformed",
    )
    table.add_row(
        "raw objects",
        f"{run.raw_objects} objects, {run.raw_records:,} records in raw/events/ for hours A and B; "
        f"{sum(run.raw_errors.values())} in raw/errors/ {dict(run.raw_errors) or ''}".rstrip(),
    )
    main = [run.compaction[h] for h in hours if h in run.compaction]
    table.add_row(
        "compacted rows",
        f"{sum(r.get('written_rows', 0) for r in main):,} "
        f"({sum(r.get('duplicates_removed', 0) for r in main)} duplicates removed)",
    )
    quarantined: Counter = Counter()
    for r in main:
        quarantined.update(r.get("quarantined_by_reason", {}))
    table.add_row(
        "quarantined",
        f"{sum(quarantined.values())}: " + ", ".join(f"{k} {v}" for k, v in sorted(quarantined.items())),
    )
    table.add_row(
        "stream sessions",
        f"{run.stream_sessions:,} started in hours A and B; the stream's ledgers (every run so far): "
        f"{run.late_events} late events, {run.rejected_records} rejected records",
    )
    batch = [h.final.get("totals", {}).get("batch", {}).get("sessions") for h in run.hours.values()]
    table.add_row("batch sessions", f"{sum(n for n in batch if n):,}" if any(batch) else "—")
    for name, hour in sorted(run.hours.items()):
        if not hour.reports:
            table.add_row(f"reconciliation {name} {hour.hour:%H}:00", f"— ({hour.story})")
            continue
        runs = []
        for report in hour.reports:
            status = report.get("status", "?")
            style = {"failed": "red", "repaired": "yellow"}.get(status, "green")
            runs.append(f"[{style}]{status}[/]")
        first = hour.reports[0]
        repair = hour.final.get("repair") or {}
        text = (
            " → ".join(runs)
            + f": {_counts_text(first.get('counts', {}))} (match rate {first.get('totals', {}).get('match_rate', 0):.2%})"
        )
        if repair:
            text += f"; repaired by batch: {repair.get('repaired_by_batch')} sessions"
        table.add_row(f"reconciliation {name} {hour.hour:%H}:00", text)
    alerts = [h for h in run.hours.values() if h.alert]
    table.add_row(
        "alert received",
        "\n".join(first_line(h.alert, 120) for h in alerts) if alerts else "none",
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

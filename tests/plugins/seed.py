"""A small, real data set for the Clickstream page, made by the pipeline's own code on the local endpoint.

Two past hours, H0 and H1 = H0 + 1 h, each with six minutes of events from the producer (duplicates, malformed
and late events switched on), sent through Kinesis -> Firehose into the raw prefix, then:

* compaction (``include.compaction``) of both hours: Parquet, quarantine, manifest;
* what the Flink job writes, modelled with the reference sessionizer (``localdev.reference``) over the records
  in arrival order: sessions, per-minute metrics, the late ledger (events behind the watermark) and the
  rejected ledger, as JSON lines in the sinks' partitions. In H1 the stream is down for two minutes, so its
  sessions miss events;
* the reconciliation (``include.reconciliation.reconcile_hour``) of both hours from those inputs (with the
  compaction quarantine, which explains records only the stream accepted), published
  like the DAG does: batch sessions Parquet, report.json, differences.parquet. H0 passes, H1 fails.

Everything the page should show can then be recomputed from the fields of :class:`Seeded`.
"""

from __future__ import annotations

import base64
import gzip
import json
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from include.compaction.compactor import compact_hour
from include.config import settings
from include.producer import ProducerParams, generate, produce_interval
from include.reconciliation import HourInputs, reconcile_hour
from include.reconciliation import layout as reconciliation_layout
from include.reconciliation.inputs import (
    QUARANTINE_SCHEMA,
    stream_text,
)
from include.sessions.contract import SessionContract, iso_ms
from localdev import reference

PARAMS = {
    "users": 2_000,
    "events_per_second": 5.0,
    "seed": 20261127,
    "duplicate_fraction": 0.04,
    "malformed_fraction": 0.03,
    "late_fraction": 0.03,
    "late_delay_seconds": 90.0,
}
#: Produced minutes of each hour: [H + FIRST_MINUTE, H + FIRST_MINUTE + MINUTES).
FIRST_MINUTE = 10
MINUTES = 6
#: In H1 the stream is down for these minutes (records sent then never reach it).
OUTAGE_MINUTES = (12, 14)


@dataclass
class StreamOutput:
    """What the modelled Flink job wrote for a set of records."""

    sessions: list[dict] = field(default_factory=list)
    metrics: list[dict] = field(default_factory=list)
    late: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)


@dataclass
class Seeded:
    hours: tuple[datetime, datetime]
    reports: dict[datetime, dict]
    stream: StreamOutput
    batch_sessions: dict[datetime, list[dict]]
    quarantined_by_reason: Counter
    records_sent: int

    @property
    def passing_hour(self) -> datetime:
        return self.hours[0]

    @property
    def failing_hour(self) -> datetime:
        return self.hours[1]

    @property
    def window_end(self) -> datetime:
        return self.hours[1] + timedelta(hours=1)


def seed_hours(now: datetime | None = None) -> tuple[datetime, datetime]:
    """H0 = three hours before the current one, H1 = H0 + 1 h: settled, and inside the page's default windows."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    current = now.replace(minute=0, second=0, microsecond=0)
    return current - timedelta(hours=3), current - timedelta(hours=2)


def model_stream(
    records: list, contract: SessionContract, now_ms: int, outage: tuple[int, int] | None
) -> StreamOutput:
    """The Flink job's outputs for ``records`` (in send order): reject rules, first-arrival dedup, events behind
    the watermark (newest event time - delay) to the late ledger, the rest sessionized. Records sent during
    ``outage`` (epoch ms, half-open) are lost, as when the application was down."""
    out = StreamOutput()
    seen: set[str] = set()
    on_time: list[reference.Event] = []
    newest: int | None = None
    for rec in sorted(records, key=lambda r: r.emit_ms):
        if outage and outage[0] <= rec.emit_ms < outage[1]:
            continue
        text = rec.data.decode("utf-8", errors="replace")
        fields = reference.extract_fields(text)
        failure = reference.reject_reason(fields, contract, now_ms)
        arrival = iso_ms(rec.emit_ms)
        if failure is not None:
            out.rejected.append({"reason": failure[1], "record": text, "arrival_time": arrival})
            continue
        event = reference.to_event(fields)
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        watermark = None if newest is None else newest - contract.watermark_delay_ms
        if watermark is not None and event.event_ms < watermark:
            out.late.append(
                {
                    "event_id": event.event_id,
                    "user_id": event.user_id,
                    "device_id": event.device_id,
                    "client_event": event.client_event,
                    "client_timestamp": event.client_timestamp,
                    "countrycode": event.countrycode,
                    "watermark_at": iso_ms(watermark),
                    "arrival_time": arrival,
                }
            )
            continue
        on_time.append(event)
        newest = event.event_ms if newest is None else max(newest, event.event_ms)
    out.sessions = reference.sessionize(on_time, contract)
    out.metrics = reference.metrics(on_time, contract)
    return out


def _partition(stamp: str) -> str:
    return f"dt={stamp[:10]}/hr={stamp[11:13]}/"


def write_sink(s3: Any, bucket: str, sink: str, rows: list[dict], partition_column: str) -> list[str]:
    """JSON lines per ``dt=/hr=`` partition, named and marked like Flink's filesystem sink does."""
    by_partition: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_partition[_partition(row[partition_column])].append(row)
    keys = []
    for part, part_rows in sorted(by_partition.items()):
        prefix = f"{settings().streaming_prefix}{sink}/{part}"
        key = f"{prefix}part-{uuid.uuid4()}-0-0"
        body = "".join(json.dumps(r) + "\n" for r in part_rows).encode("ascii")
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        s3.put_object(Bucket=bucket, Key=f"{prefix}_SUCCESS", Body=b"")
        keys.append(key)
    return keys


def _delivered(s3: Any, bucket: str, day_hours: list[datetime]) -> int:
    """Raw lines plus Firehose error records that landed for the given event hours (any arrival hour)."""
    count = 0
    prefixes = [f"{settings().raw_prefix}event_date={h:%Y-%m-%d}/event_hour={h:%H}/" for h in day_hours]
    prefixes.append(settings().raw_error_prefix)
    for prefix in prefixes:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", ()):
                count += len(
                    gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()).splitlines()
                )
    return count


def _wait_for_delivery(
    s3: Any, bucket: str, hours: list[datetime], expected: int, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = _delivered(s3, bucket, hours)
        if got >= expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"Firehose delivered {got} of {expected} records within {timeout}s")
        time.sleep(1)


def _compacted_events(s3: Any, bucket: str, hours: list[datetime]) -> pa.Table:
    tables = []
    for hour in hours:
        prefix = f"{settings().compacted_prefix}event_date={hour:%Y-%m-%d}/event_hour={hour:%H}/"
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            tables.append(pq.read_table(pa.BufferReader(body)))
    return pa.concat_tables(tables)


def _quarantined_records(s3: Any, bucket: str, hours: list[datetime]) -> pa.Table:
    """What the batch refused, as the text the stream read (``QUARANTINE_SCHEMA``): the hours' compaction
    quarantine, plus the records Firehose could not partition (e.g. invalid UTF-8). Those land under the
    *arrival* hour's error prefix, which is now for this replay, so no compaction of H0/H1 sees them."""
    texts = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=settings().raw_error_prefix
    ):
        for obj in page.get("Contents", ()):
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            texts.extend(
                stream_text(base64.b64decode(json.loads(line)["rawData"])) for line in body.splitlines()
            )
    for hour in hours:
        prefix = f"{settings().quarantine_prefix}event_date={hour:%Y-%m-%d}/event_hour={hour:%H}/"
        for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            for line in body.splitlines():
                row = json.loads(line)
                raw = base64.b64decode(row["raw"]) if row["raw_encoding"] == "base64" else row["raw"].encode()
                texts.append(stream_text(raw))
    return pa.table({"record": pa.array(texts, pa.string())}, schema=QUARANTINE_SCHEMA)


def seed(s3: Any, kinesis: Any, now: datetime | None = None) -> Seeded:
    """Produce, land, compact, model the stream, reconcile and publish the two hours (about half a minute)."""
    cfg = settings()
    bucket = cfg.bucket
    contract = SessionContract()
    now = now or datetime.now(UTC)
    hours = seed_hours(now)
    params = ProducerParams.from_dict(PARAMS)

    records = []
    for hour in hours:
        start = hour + timedelta(minutes=FIRST_MINUTE)
        end = start + timedelta(minutes=MINUTES)
        produce_interval(kinesis, cfg.stream_name, params, start, end)
        records.append((hour, generate(params, start, end).records))
    sent = sum(len(r) for _, r in records)
    _wait_for_delivery(s3, bucket, list(hours), sent)

    quarantined: Counter = Counter()
    for hour in hours:
        result = compact_hour(s3, bucket, hour, settings=cfg, now=now, code_version="tests/plugins")
        quarantined.update(result.quarantined_by_reason)

    now_ms = int(now.timestamp() * 1000)
    stream = StreamOutput()
    for hour, hour_records in records:
        outage = None
        if hour == hours[1]:
            lo, hi = (hour + timedelta(minutes=m) for m in OUTAGE_MINUTES)
            outage = (int(lo.timestamp() * 1000), int(hi.timestamp() * 1000))
        part = model_stream(hour_records, contract, now_ms, outage)
        for name in ("sessions", "metrics", "late", "rejected"):
            getattr(stream, name).extend(getattr(part, name))
    write_sink(s3, bucket, "sessions", stream.sessions, "session_start")
    write_sink(s3, bucket, "metrics", stream.metrics, "window_start")
    write_sink(s3, bucket, "late_events", stream.late, "arrival_time")
    write_sink(s3, bucket, "rejected_events", stream.rejected, "arrival_time")

    events = _compacted_events(s3, bucket, list(hours))
    reports: dict[datetime, dict] = {}
    batch_sessions: dict[datetime, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="clickstream-plugin-seed-") as tmp:
        # The stream's rows as the JSON lines the sinks wrote (as the DAG reads them): a record the producer
        # escaped as a lone surrogate stays escaped, which an Arrow table of Python strings cannot hold.
        def sink_lines(name: str, rows: list[dict]) -> list[Path]:
            path = Path(tmp) / f"{name}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
            return [path]

        inputs = HourInputs(
            batch_events=events,
            stream_sessions=sink_lines("sessions", stream.sessions),
            stream_late=sink_lines("late", stream.late),
            stream_rejected=sink_lines("rejected", stream.rejected),
            quarantined=_quarantined_records(s3, bucket, list(hours)),
        )
        for hour in hours:
            result = reconcile_hour(hour, inputs)
            written = result.write(Path(tmp) / hour.strftime("%Y%m%d%H"))
            keys = {
                "sessions": reconciliation_layout.batch_sessions_key(cfg, hour),
                "report": reconciliation_layout.report_key(cfg, hour),
                "differences": reconciliation_layout.differences_key(cfg, hour),
            }
            for name, key in keys.items():
                s3.upload_file(str(written[name]), bucket, key)
            reports[hour] = json.loads(written["report"].read_text(encoding="utf-8"))
            batch_sessions[hour] = result.sessions.to_pylist()
    return Seeded(
        hours=hours,
        reports=reports,
        stream=stream,
        batch_sessions=batch_sessions,
        quarantined_by_reason=quarantined,
        records_sent=sent,
    )

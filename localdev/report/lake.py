"""Read what the analytics report needs from the lake bucket, in the layouts the pipeline writes.

    streaming/sessions/dt=/hr=/part-*        the Flink job's sessions (JSON lines), by session_start hour
    streaming/metrics/dt=/hr=/part-*         its per-minute metrics (JSON lines), by window_start hour
    streaming/{late,rejected}_events/dt=/hr=/part-*   its ledgers, by arrival hour
    manifests/compaction/event_date=/event_hour=/manifest.json   -> the compacted Parquet and its counts
    batch/sessions/dt=/hr=/part-00000.parquet         batch sessions the reconciliation published
    reports/reconciliation/dt=/hr=/report.json        the hour's reconciliation report

Compacted hours are read through their manifests (never a half-published hour); the stream's committed part
files are read as they are ('.'-prefixed in-progress files and '_SUCCESS' markers are skipped).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from include.compaction import layout as compaction_layout
from include.config import Settings
from include.sessions.contract import METRIC_FIELDS, SESSION_FIELDS

_INT_COLUMNS = {"user_id": pa.int32(), "duration_ms": pa.int64(), "event_count": pa.int64()}
#: The stream's session rows (and the published batch sessions): timestamps as wire-format strings.
SESSIONS_SCHEMA = pa.schema([(name, _INT_COLUMNS.get(name, pa.string())) for name in SESSION_FIELDS])
METRICS_SCHEMA = pa.schema(
    [(name, pa.int64() if name in ("events", "users") else pa.string()) for name in METRIC_FIELDS]
)
_HOUR = timedelta(hours=1)
_STREAM_PARTITION = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hr=(\d{2})/")
_EVENT_PARTITION = re.compile(r"event_date=(\d{4}-\d{2}-\d{2})/event_hour=(\d{2})/")


class LakeReadError(RuntimeError):
    """The lake cannot be read as the report needs it; the message names the bucket, key or hour."""


@dataclass
class LakeData:
    """Everything the report draws, for the hours in ``hours`` (UTC hour starts, sorted)."""

    bucket: str
    hours: list[datetime]
    stream_sessions: pa.Table
    metrics: pa.Table
    #: Compacted events (the compaction's Parquet schema) of the hours that have a manifest.
    events: pa.Table | None
    #: Published batch sessions of the hours that have them (None when no hour has any).
    batch_sessions: pa.Table | None
    manifests: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    reconciliation: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    #: Events of these hours in the stream's late ledger.
    late_events: int = 0
    #: Records the stream rejected that arrived from the first hour to the ledger horizon after the last.
    rejected_by_reason: Counter = field(default_factory=Counter)
    #: Where each part came from, for the report's footer.
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def batch_session_hours(self) -> list[datetime]:
        if self.batch_sessions is None or self.batch_sessions.num_rows == 0:
            return []
        starts = {s[:13] for s in self.batch_sessions.column("session_start").to_pylist()}
        return [h for h in self.hours if h.strftime("%Y-%m-%dT%H") in starts]

    def is_empty(self) -> bool:
        no_events = self.events is None or self.events.num_rows == 0
        return no_events and self.stream_sessions.num_rows == 0 and self.metrics.num_rows == 0


def hour_of(text: str) -> datetime:
    """``2026-11-27T10`` (or any ISO timestamp inside that hour) as the aware hour start."""
    try:
        ts = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            ts = datetime.strptime(text.strip(), "%Y-%m-%dT%H")
        except ValueError:
            raise ValueError(f"not an hour like 2026-11-27T10: {text!r}") from None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.replace(minute=0, second=0, microsecond=0)


def hour_range(first: datetime, last: datetime) -> list[datetime]:
    hours, hour = [], first
    while hour <= last:
        hours.append(hour)
        hour += _HOUR
    return hours


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    try:
        for obj in compaction_layout.list_objects(s3, bucket, prefix):
            yield obj["Key"]
    except s3.exceptions.NoSuchBucket:
        raise LakeReadError(
            f"bucket {bucket!r} does not exist on this endpoint: run `make demo` (or the clickstream_setup "
            "DAG) first, or pass the right --bucket"
        ) from None


def _committed(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return bool(name) and not name.startswith((".", "_"))


def _body(s3: Any, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _partition_hour(pattern: re.Pattern, key: str) -> datetime | None:
    match = pattern.search(key)
    if match is None:
        return None
    return datetime.strptime(f"{match[1]}T{match[2]}", "%Y-%m-%dT%H").replace(tzinfo=UTC)


def _hour_path(hour: datetime) -> str:
    return f"dt={hour:%Y-%m-%d}/hr={hour:%H}/"


def _text(value: str) -> str:
    """A JSON string as Arrow can store it: a lone surrogate escape (\\ud800) becomes U+FFFD."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def _json_lines(s3: Any, bucket: str, key: str) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(_body(s3, bucket, key).decode("utf-8", "replace").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise LakeReadError(f"s3://{bucket}/{key} line {number} is not JSON: {exc}") from None
            yield {k: _text(v) if isinstance(v, str) else v for k, v in row.items()}


def _partitions(s3: Any, bucket: str, prefix: str, pattern: re.Pattern) -> dict[datetime, list[str]]:
    """Committed keys under ``prefix`` by partition hour (one listing)."""
    found: dict[datetime, list[str]] = {}
    for key in _keys(s3, bucket, prefix):
        hour = _partition_hour(pattern, key)
        if hour is not None and _committed(key):
            found.setdefault(hour, []).append(key)
    return found


def _stream_rows(s3: Any, bucket: str, settings: Settings, table: str, hours: Iterable[datetime]):
    """Rows of a Flink sink's partitions ``hours`` (sessions/metrics: event hours; ledgers: arrival hours)."""
    partitions = _partitions(s3, bucket, f"{settings.streaming_prefix}{table}/", _STREAM_PARTITION)
    for hour in sorted(set(hours) & set(partitions)):
        for key in partitions[hour]:
            yield from _json_lines(s3, bucket, key)


def _table(rows: list[dict[str, Any]], schema: pa.Schema, where: str) -> pa.Table:
    try:
        return pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LakeReadError(f"rows under {where} do not fit {schema.names}: {exc}") from None


def discover_hours(s3: Any, bucket: str, settings: Settings, span_hours: int = 24) -> list[datetime]:
    """Hours that have compacted events or streamed sessions, within ``span_hours`` of the latest one."""
    found: set[datetime] = set()
    for key in _keys(s3, bucket, settings.manifest_prefix):
        hour = _partition_hour(_EVENT_PARTITION, key)
        if hour is not None:
            found.add(hour)
    for key in _keys(s3, bucket, f"{settings.streaming_prefix}sessions/"):
        hour = _partition_hour(_STREAM_PARTITION, key)
        if hour is not None and _committed(key):
            found.add(hour)
    if not found:
        return []
    latest = max(found)
    return sorted(h for h in found if h > latest - span_hours * _HOUR)


def read_lake(s3: Any, bucket: str, settings: Settings, hours: list[datetime]) -> LakeData:
    """The report's inputs for ``hours`` (sorted hour starts)."""
    hours = sorted(set(hours))
    where = f"s3://{bucket}/{settings.streaming_prefix}"
    stream_sessions = _table(
        list(_stream_rows(s3, bucket, settings, "sessions", hours)), SESSIONS_SCHEMA, where + "sessions/"
    )
    metrics = _table(
        list(_stream_rows(s3, bucket, settings, "metrics", hours)), METRICS_SCHEMA, where + "metrics/"
    )
    # The ledgers are partitioned by arrival hour: a late event of hour H arrives up to the ledger horizon later.
    ledger_hours = hour_range(hours[0], hours[-1] + settings.reconcile_ledger_hours * _HOUR) if hours else []
    wanted = {h.strftime("%Y-%m-%dT%H") for h in hours}
    late = sum(
        1
        for row in _stream_rows(s3, bucket, settings, "late_events", ledger_hours)
        if str(row.get("client_timestamp", ""))[:13] in wanted
    )
    rejected = Counter(
        r.get("reason") for r in _stream_rows(s3, bucket, settings, "rejected_events", ledger_hours)
    )

    manifests: dict[datetime, dict[str, Any]] = {}
    event_tables: list[pa.Table] = []
    for hour in hours:
        key = compaction_layout.manifest_key(settings, hour)
        try:
            manifest = json.loads(_body(s3, bucket, key))
        except s3.exceptions.NoSuchKey:
            continue
        manifests[hour] = manifest
        for item in manifest.get("outputs", {}).get("data_files", []):
            try:
                event_tables.append(pq.read_table(pa.BufferReader(_body(s3, bucket, item["key"]))))
            except s3.exceptions.NoSuchKey:
                raise LakeReadError(
                    f"manifest s3://{bucket}/{key} lists s3://{bucket}/{item['key']}, which does not exist"
                ) from None
    events = pa.concat_tables(event_tables) if event_tables else None

    batch_tables: list[pa.Table] = []
    reports: dict[datetime, dict[str, Any]] = {}
    for hour in hours:
        for key in _keys(s3, bucket, settings.batch_sessions_prefix + _hour_path(hour)):
            if key.endswith(".parquet"):
                table = pq.read_table(pa.BufferReader(_body(s3, bucket, key)))
                missing = [n for n in SESSIONS_SCHEMA.names if n not in table.column_names]
                if missing:
                    raise LakeReadError(f"s3://{bucket}/{key} lacks the session columns {missing}")
                batch_tables.append(table.select(SESSIONS_SCHEMA.names).cast(SESSIONS_SCHEMA))
        report_key = f"{settings.reconciliation_reports_prefix}{_hour_path(hour)}report.json"
        try:
            reports[hour] = json.loads(_body(s3, bucket, report_key))
        except s3.exceptions.NoSuchKey:
            pass
    return LakeData(
        bucket=bucket,
        hours=hours,
        stream_sessions=stream_sessions,
        metrics=metrics,
        events=events,
        batch_sessions=pa.concat_tables(batch_tables) if batch_tables else None,
        manifests=manifests,
        reconciliation=reports,
        late_events=late,
        rejected_by_reason=rejected,
        sources={
            "stream": where,
            "compacted": f"s3://{bucket}/{settings.manifest_prefix}",
            "batch": f"s3://{bucket}/{settings.batch_sessions_prefix}",
            "reconciliation": f"s3://{bucket}/{settings.reconciliation_reports_prefix}",
        },
    )

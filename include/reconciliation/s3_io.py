"""The S3 side of a reconciliation run: the lake's layout -> local files (:class:`HourInputs`), results -> S3.

The compacted hours are read through their manifests (a reader that follows the manifest never sees a
half-published hour); a missing manifest is an error naming the hour, since reconciling without it would report
sessions as missing. The stream's partitions are read as they are (committed part files only).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from include.compaction import layout as compaction_layout
from include.config import Settings
from include.reconciliation import layout
from include.reconciliation.inputs import COPIES_SCHEMA, QUARANTINE_SCHEMA, HourInputs, stream_text
from include.reconciliation.options import HourWindow, ReconcileOptions

log = logging.getLogger(__name__)


class MissingInput(RuntimeError):
    """An input the hour needs is not in S3 (yet); the message names the key."""


def _get_json(s3_client: Any, bucket: str, key: str) -> dict | None:
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3_client.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def _download(s3_client: Any, bucket: str, key: str, directory: Path, suffix: str = "") -> Path:
    path = directory / (key.replace("/", "__") + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    s3_client.download_file(bucket, key, str(path))
    return path


def _quarantine_records(path: Path) -> list[str]:
    records = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                raw = row["raw"]
                data = base64.b64decode(raw) if row.get("raw_encoding") == "base64" else raw.encode("utf-8")
                records.append(stream_text(data))
    return records


def _firehose_error_records(path: Path) -> list[str]:
    """The original records of a Firehose error object (JSON lines with base64 ``rawData``), as the stream reads
    them; a line that is no error record is skipped here (compaction quarantines it with its own reason)."""
    records = []
    with gzip.open(path, "rb") as handle:
        for line in handle:
            try:
                envelope = json.loads(line)
                records.append(stream_text(base64.b64decode(envelope["rawData"], validate=True)))
            except (ValueError, KeyError, TypeError):
                continue
    return records


def raw_copies(paths: list[Path]) -> pa.Table:
    """event_ids found more than once in raw Firehose objects (gzip JSON lines), with their number of copies."""
    if not paths:
        return COPIES_SCHEMA.empty_table()
    files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"
    con = duckdb.connect()
    try:
        return (
            con.sql(
                "SELECT lower(json_extract_string(json, '$.event_id')) AS event_id, count(*)::BIGINT AS copies "
                f"FROM read_json_objects({files}, format = 'newline_delimited', compression = 'gzip', "
                "ignore_errors = true) WHERE json_extract_string(json, '$.event_id') IS NOT NULL "
                "GROUP BY 1 HAVING count(*) > 1"
            )
            .to_arrow_table()
            .cast(COPIES_SCHEMA)
        )
    finally:
        con.close()


def download_hour_inputs(
    s3_client: Any,
    bucket: str,
    settings: Settings,
    hour: datetime,
    work_dir: str | Path,
    options: ReconcileOptions | None = None,
    *,
    ledger_until: datetime | None = None,
    count_raw_copies: bool = True,
) -> HourInputs:
    """Download what hour ``hour`` needs into ``work_dir``.

    Compacted hours H - gap ... H + 1 h + L (data and quarantine files, through their manifests); the stream's
    session partitions from an hour before that to the horizon; its late and rejected ledgers by arrival hour
    from H - gap to ``ledger_until`` (default now), at most ``settings.reconcile_ledger_hours`` after H; and,
    when ``count_raw_copies`` and a manifest reports removed duplicates, that hour's raw objects to count copies.
    """
    options = options or ReconcileOptions.from_settings(settings)
    window = HourWindow.of(hour, options)
    work = Path(work_dir)
    events: list[Path] = []
    quarantined: list[str] = []
    raw_files: list[Path] = []
    counts = {"compacted_rows": 0, "quarantined": 0, "duplicates_removed": 0}
    for event_hour in window.event_hours():
        key = compaction_layout.manifest_key(settings, event_hour)
        manifest = _get_json(s3_client, bucket, key)
        if manifest is None:
            raise MissingInput(
                f"hour {event_hour:%Y-%m-%dT%H} is not compacted (no manifest s3://{bucket}/{key}); hour "
                f"{window.hour:%Y-%m-%dT%H} reads it to settle its sessions"
            )
        outputs = manifest["outputs"]
        for item in outputs.get("data_files", []):
            events.append(_download(s3_client, bucket, item["key"], work / "compacted"))
            counts["compacted_rows"] += int(item.get("rows", 0))
        for item in outputs.get("quarantine_files", []):
            quarantined += _quarantine_records(_download(s3_client, bucket, item["key"], work / "quarantine"))
        removed = int(manifest.get("counts", {}).get("duplicates_removed", 0))
        counts["duplicates_removed"] += removed
        if count_raw_copies and removed:
            for obj in compaction_layout.list_raw_objects(s3_client, bucket, settings, event_hour):
                raw_files.append(_download(s3_client, bucket, obj["key"], work / "raw", ".gz"))
    ledger = window.ledger_hours(ledger_until or datetime.now(UTC), settings.reconcile_ledger_hours)
    # Firehose files records it cannot partition (e.g. invalid UTF-8) by ARRIVAL hour, and compaction quarantines
    # them with that hour. The stream's rejected ledger is read by arrival hour up to ledger_until; read Firehose's
    # error records over the same arrival hours, so a record replayed or delayed past the window is a
    # rule_difference on both sides instead of a mismatch.
    compacted_hours = set(window.event_hours())
    for arrival_hour in ledger:
        if arrival_hour in compacted_hours:
            continue  # already in that hour's quarantine file
        for obj in compaction_layout.list_error_objects(s3_client, bucket, settings, arrival_hour):
            path = _download(s3_client, bucket, obj["key"], work / "errors", ".gz")
            quarantined += _firehose_error_records(path)
    counts["quarantined"] = len(quarantined)

    def stream_files(table: str, hours: list[datetime]) -> list[Path]:
        files = []
        for h in hours:
            prefix = layout.stream_prefix(settings, table, h)
            for obj in compaction_layout.list_objects(s3_client, bucket, prefix):
                if layout.is_committed_part(obj["Key"]):
                    files.append(_download(s3_client, bucket, obj["Key"], work / "stream"))
        return files

    inputs = HourInputs(
        batch_events=events,
        stream_sessions=stream_files(layout.STREAM_SESSIONS, window.stream_session_hours()),
        stream_late=stream_files(layout.STREAM_LATE, ledger),
        stream_rejected=stream_files(layout.STREAM_REJECTED, ledger),
        quarantined=pa.table({"record": quarantined}, schema=QUARANTINE_SCHEMA),
        raw_copies=raw_copies(raw_files),
        batch_counts=counts,
    )
    log.info(
        "hour %s: %d compacted files, %d quarantined records, %d raw objects for copies, stream files: "
        "%d sessions, %d late, %d rejected",
        window.describe()["hour_start"],
        len(events),
        len(quarantined),
        len(raw_files),
        len(inputs.stream_sessions),
        len(inputs.stream_late),
        len(inputs.stream_rejected),
    )
    return inputs


def publish_hour(
    s3_client: Any, bucket: str, settings: Settings, hour: datetime, result: Any, work_dir: str | Path
) -> dict[str, str]:
    """Upload the hour's batch sessions, differences and report (last, so its presence means "done").

    Same keys on every run: a rerun of the hour replaces them with identical content for identical inputs.
    """
    files = result.write(Path(work_dir) / "out")
    keys = {
        "sessions": layout.batch_sessions_key(settings, hour),
        "differences": layout.differences_key(settings, hour),
        "report": layout.report_key(settings, hour),
    }
    for name in ("sessions", "differences", "report"):
        s3_client.upload_file(str(files[name]), bucket, keys[name])
    return {name: f"s3://{bucket}/{key}" for name, key in keys.items()}

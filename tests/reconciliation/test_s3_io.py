"""The S3 layout -> inputs -> the same report as the offline files, and publishing (moto, in process)."""

from __future__ import annotations

import base64
import gzip
import io
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.compaction import layout as compaction_layout
from include.compaction.validation import RecordValidator, Rejection
from include.config import Settings
from include.reconciliation import ReconcileOptions, layout, reconcile_hour, s3_io
from include.reconciliation.inputs import EVENTS_SCHEMA
from include.reconciliation.offline import read_inputs, read_raw_events
from include.reconciliation.options import floor_hour
from localdev import reference
from tests.moto_s3 import s3_with_bucket
from tests.reconciliation.helpers import CONTRACT, H, every_cause, line

BUCKET = "lake"
SETTINGS = Settings()
NOW = H + timedelta(days=1)


def _gz(lines: list[str]) -> bytes:
    return gzip.compress("".join(x + "\n" for x in lines).encode("utf-8"), mtime=0)


def _hour_of(ts: str) -> datetime:
    return floor_hour(datetime.fromisoformat(ts.replace("Z", "+00:00")))


def put_lake(s3, scenario, tmp_path) -> None:
    """The scenario as compaction and the Flink job would have left it in the bucket."""
    records = [line(r) for r in scenario.batch]
    raw_path = tmp_path / "raw.jsonl"
    raw_path.write_text("".join(r + "\n" for r in records))
    events, _, copies, _ = read_raw_events(raw_path, NOW, CONTRACT)
    by_hour: dict[datetime, list[dict]] = defaultdict(list)
    for row in events.to_pylist():
        by_hour[floor_hour(row["client_timestamp"])].append(row)
    quarantine: dict[datetime, list[str]] = defaultdict(list)
    raw_by_hour: dict[datetime, list[str]] = defaultdict(list)
    validator = RecordValidator(None, NOW, timedelta(minutes=5))
    for record in records:
        ts = (reference.extract_fields(record) or {}).get("client_timestamp") or "2026-11-27T10:00:00.000Z"
        raw_by_hour[_hour_of(ts)].append(record)
        if isinstance(validator.validate(record.encode()), Rejection):
            quarantine[_hour_of(ts)].append(record)
    for hour in [H - timedelta(hours=1), H, H + timedelta(hours=1)]:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(by_hour[hour], schema=EVENTS_SCHEMA), buffer)
        data_key = compaction_layout.compacted_hour_prefix(SETTINGS, hour) + compaction_layout.DATA_FILE_NAME
        s3.put_object(Bucket=BUCKET, Key=data_key, Body=buffer.getvalue())
        outputs = {"data_files": [{"key": data_key, "rows": len(by_hour[hour])}], "quarantine_files": []}
        if quarantine[hour]:
            q_key = (
                compaction_layout.quarantine_hour_prefix(SETTINGS, hour)
                + compaction_layout.QUARANTINE_FILE_NAME
            )
            rows = [
                json.dumps(
                    {"reason": "x", "raw": base64.b64encode(r.encode()).decode(), "raw_encoding": "base64"}
                )
                for r in quarantine[hour]
            ]
            s3.put_object(Bucket=BUCKET, Key=q_key, Body=_gz(rows))
            outputs["quarantine_files"].append({"key": q_key})
        s3.put_object(
            Bucket=BUCKET,
            Key=compaction_layout.raw_hour_prefix(SETTINGS, hour) + "part-0001",
            Body=_gz(raw_by_hour[hour]),
        )
        removed = len(raw_by_hour[hour]) - len(quarantine[hour]) - len(by_hour[hour])
        manifest = {"inputs": {}, "outputs": outputs, "counts": {"duplicates_removed": removed}}
        s3.put_object(
            Bucket=BUCKET, Key=compaction_layout.manifest_key(SETTINGS, hour), Body=json.dumps(manifest)
        )
    assert copies.num_rows == 1
    for table, rows, column in (
        (layout.STREAM_SESSIONS, scenario.sessions, "session_start"),
        (layout.STREAM_LATE, scenario.late, "arrival_time"),
        (layout.STREAM_REJECTED, scenario.rejected, "arrival_time"),
    ):
        parts: dict[datetime, list[str]] = defaultdict(list)
        for row in rows:
            parts[_hour_of(row[column])].append(json.dumps(row))
        for hour, lines in parts.items():
            prefix = layout.stream_prefix(SETTINGS, table, hour)
            s3.put_object(Bucket=BUCKET, Key=prefix + "part-abc-0", Body="".join(x + "\n" for x in lines))
            s3.put_object(Bucket=BUCKET, Key=prefix + "_SUCCESS", Body=b"")
            s3.put_object(Bucket=BUCKET, Key=prefix + ".part-abc-1.inprogress", Body=b"{not json")


@pytest.fixture
def s3():
    with s3_with_bucket(BUCKET) as client:
        yield client


def test_s3_inputs_give_the_same_report_as_the_offline_files(s3, tmp_path):
    scenario = every_cause()
    put_lake(s3, scenario, tmp_path)
    options = ReconcileOptions(now=NOW)
    inputs = s3_io.download_hour_inputs(s3, BUCKET, SETTINGS, H, tmp_path / "work", options, ledger_until=NOW)
    from_s3 = reconcile_hour(H, inputs, options).report
    files = scenario.write(tmp_path)
    offline = reconcile_hour(
        H, read_inputs(files["batch"], files["sessions"], files["late"], files["rejected"], now=NOW), options
    ).report
    assert from_s3.counts == offline.counts
    assert from_s3.differences == offline.differences
    assert from_s3.totals["stream"] == offline.totals["stream"]
    assert from_s3.totals["batch"]["extra_raw_copies"] == 1


def test_publish_writes_the_layout_and_a_rerun_the_same_bytes(s3, tmp_path):
    scenario = every_cause()
    put_lake(s3, scenario, tmp_path)
    options = ReconcileOptions(now=NOW)
    published = []
    for run in ("a", "b"):
        inputs = s3_io.download_hour_inputs(
            s3, BUCKET, SETTINGS, H, tmp_path / run, options, ledger_until=NOW
        )
        urls = s3_io.publish_hour(s3, BUCKET, SETTINGS, H, reconcile_hour(H, inputs, options), tmp_path / run)
        published.append(
            {k: s3.get_object(Bucket=BUCKET, Key=u.split("/", 3)[3])["Body"].read() for k, u in urls.items()}
        )
    assert urls == {
        "sessions": "s3://lake/batch/sessions/dt=2026-11-27/hr=10/part-00000.parquet",
        "differences": "s3://lake/reports/reconciliation/dt=2026-11-27/hr=10/differences.parquet",
        "report": "s3://lake/reports/reconciliation/dt=2026-11-27/hr=10/report.json",
    }
    assert published[0] == published[1]
    assert json.loads(published[0]["report"])["counts"]["mismatch"] == 1


def test_a_missing_compaction_manifest_is_named(s3, tmp_path):
    put_lake(s3, every_cause(), tmp_path)
    s3.delete_object(Bucket=BUCKET, Key=compaction_layout.manifest_key(SETTINGS, H + timedelta(hours=1)))
    with pytest.raises(
        s3_io.MissingInput, match=r"hour 2026-11-27T11 is not compacted .*manifests/compaction/"
    ):
        s3_io.download_hour_inputs(s3, BUCKET, SETTINGS, H, tmp_path, ReconcileOptions(), ledger_until=NOW)


def test_ledger_hours_are_bounded():
    from include.reconciliation.options import HourWindow

    window = HourWindow.of(H, ReconcileOptions())
    hours = window.ledger_hours(H + timedelta(days=30), max_hours=48)
    assert hours[0] == H - timedelta(hours=1) and hours[-1] == H + timedelta(hours=48)
    assert window.ledger_hours(datetime(2026, 11, 27, 10, 20, tzinfo=UTC), 48) == [H - timedelta(hours=1), H]


def test_firehose_error_records_arriving_after_the_window_are_read_like_the_streams_rejected_ledger(
    s3, tmp_path
):
    """A record Firehose could not partition is filed by its arrival hour; arriving 4 h after H (a replay),
    no compaction the window reads has it, but the stream's ledger is read up to ledger_until: both sides
    must see it, or a rule difference reads as a mismatch."""
    put_lake(s3, every_cause(), tmp_path)
    options = ReconcileOptions(now=NOW)
    before = s3_io.download_hour_inputs(s3, BUCKET, SETTINGS, H, tmp_path / "a", options, ledger_until=NOW)
    record = b'{"event_id":"9f0c6f1e-0000-4000-8000-000000000001","user_id":7,"device_id":"web","client_event":"\xff","client_timestamp":"2026-11-27T10:10:00.000Z","countrycode":"DE"}'
    envelope = {
        "rawData": base64.b64encode(record).decode(),
        "errorCode": "DynamicPartitioning.MetadataExtractionFailed",
        "errorMessage": "invalid UTF-8",
    }
    arrival = H + timedelta(hours=4)
    error_key = f"{SETTINGS.raw_error_prefix}partitioning-failed/{compaction_layout.error_hour_suffix(arrival)}err-1.gz"
    s3.put_object(Bucket=BUCKET, Key=error_key, Body=_gz([json.dumps(envelope), "not an error record"]))
    after = s3_io.download_hour_inputs(s3, BUCKET, SETTINGS, H, tmp_path / "b", options, ledger_until=NOW)
    added = set(after.quarantined.column("record").to_pylist()) - set(
        before.quarantined.column("record").to_pylist()
    )
    assert added == {s3_io.stream_text(record)}
    assert after.batch_counts["quarantined"] == before.batch_counts["quarantined"] + 1
    # Outside the ledger's arrival hours (ledger_until before the arrival) it is not read.
    early = s3_io.download_hour_inputs(
        s3, BUCKET, SETTINGS, H, tmp_path / "c", options, ledger_until=H + timedelta(hours=3)
    )
    assert early.batch_counts["quarantined"] == before.batch_counts["quarantined"]

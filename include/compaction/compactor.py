"""Hourly compaction: raw Firehose objects of one event hour -> one deduplicated, sorted, typed Parquet file.

Flow, with bounded memory whatever the hour's size:

1. List the raw objects of event hour H and the Firehose error objects of arrival hour H, sorted by key (so
   the result never depends on listing order; within a partition Firehose keys sort by arrival time).
2. Stream every object (GetObject pinned to the listed ETag) through gzip in blocks, split lines, validate
   each record. Valid rows go to columnar chunks spilled to local Parquet files; rejects go to a local
   JSONL.gz quarantine with reason, detail, source key, line number and the original text.
3. DuckDB (``memory_limit``, ``temp_directory``) deduplicates by event_id - keeping the earliest
   client_timestamp, ties broken by (source key, line) i.e. arrival order - and sorts by (user_id,
   device_id, client_timestamp, event_id). pyarrow writes the result batch by batch with the exact column
   types while hashing a canonical serialisation of the rows (the content checksum, identical on reruns).
4. Upload to ``compacted/_staging/<run-id>/``, then publish: delete the old manifest, copy to the final keys,
   delete final keys that are not in the new set, delete the staging keys, and write the manifest last.
   Readers going through the manifest never see a half-written hour; Athena sees either the old or the new
   single file.

Every count is checked against an independent one before publishing (lines read = valid + quarantined, spilled
rows = valid, written rows = distinct event_ids = valid - duplicates_removed); a mismatch raises.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from include.compaction import layout
from include.compaction.validation import (
    FIREHOSE_PARTITIONING_FAILED,
    RecordValidator,
    Rejection,
    show,
)
from include.config import Settings

log = logging.getLogger(__name__)

#: The compacted table's Parquet schema (Athena: string, int, string, string, timestamp, string).
EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.int32(), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("client_event", pa.string(), nullable=False),
        pa.field("client_timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("countrycode", pa.string(), nullable=False),
    ]
)

#: Spill chunks also carry where each row came from, for arrival-order tie-breaking.
_SPILL_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("user_id", pa.int32()),
        ("device_id", pa.string()),
        ("client_event", pa.string()),
        ("ts_ms", pa.int64()),
        ("countrycode", pa.string()),
        ("src", pa.int32()),
        ("line", pa.int64()),
    ]
)

CHECKSUM_ALGORITHM = (
    "sha256 over the rows in file order, each serialised as UTF-8 "
    "'event_id\\tuser_id\\tdevice_id\\tclient_timestamp_epoch_ms\\tcountrycode\\t"
    "<len(client_event) in code points>:client_event\\n'"
)
MANIFEST_VERSION = 1
#: Cause recorded for Firehose error records whose payload passes validation (the event is not compacted).
CAUSE_VALID = "valid"
#: Cause recorded when a line of a Firehose error object is not an error record with base64 rawData.
CAUSE_UNREADABLE_ERROR_RECORD = "unreadable_error_record"

_READ_BLOCK = 1 << 20


class CompactionError(RuntimeError):
    """The hour could not be compacted; nothing was published."""


class RawObjectUnreadable(CompactionError):
    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"cannot read s3 object {key!r}: {problem}")
        self.key = key


class CountMismatch(CompactionError):
    pass


@dataclass
class CompactionResult:
    """What one compaction did; ``to_dict()`` is JSON-serialisable for Asset event extras and logs."""

    hour: str
    event_date: str
    event_hour: str
    run_id: str
    code_version: str
    raw_objects: int
    error_objects: int
    input_bytes: int
    uncompressed_bytes: int
    lines_read: int
    error_records_read: int
    valid: int
    duplicates_removed: int
    duplicates_conflicting: int
    quarantined: int
    quarantined_by_reason: dict[str, int]
    firehose_errors_by_cause: dict[str, int]
    written_rows: int
    data_keys: list[str]
    quarantine_keys: list[str]
    manifest_key: str
    content_checksum: str
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _read_blocks(s3_client: Any, bucket: str, obj: dict, sizes: Counter[str]) -> Iterator[list[bytes]]:
    """Yield the object's lines in blocks, newline removed; any read or gzip failure names the key.

    ``sizes["uncompressed_bytes"]`` is increased by the decompressed size as it is read.
    """
    key = obj["key"]
    try:
        body = s3_client.get_object(Bucket=bucket, Key=key, IfMatch=obj["etag"])["Body"]
    except Exception as exc:
        raise RawObjectUnreadable(key, f"GetObject (If-Match {obj['etag']}) failed: {exc}") from exc
    try:
        gz = gzip.GzipFile(fileobj=body, mode="rb")
        leftover = b""
        while True:
            try:
                chunk = gz.read(_READ_BLOCK)
            except (OSError, EOFError, zlib.error) as exc:
                raise RawObjectUnreadable(key, f"not a complete GZIP stream ({exc})") from exc
            except Exception as exc:  # botocore streaming errors: connection reset, incomplete read...
                raise RawObjectUnreadable(key, f"reading the body failed ({exc})") from exc
            if not chunk:
                break
            sizes["uncompressed_bytes"] += len(chunk)
            lines = (leftover + chunk).split(b"\n") if leftover else chunk.split(b"\n")
            leftover = lines.pop()
            yield lines
        if leftover:
            yield [leftover]
    finally:
        body.close()


class _Spill:
    """Valid rows buffered as tuples, spilled every ``chunk_rows`` to a local Parquet file."""

    def __init__(self, directory: Path, chunk_rows: int) -> None:
        self.directory = directory
        self.chunk_rows = chunk_rows
        self.rows: list[tuple] = []
        self.srcs: list[int] = []
        self.lines: list[int] = []
        self.files: list[str] = []
        self.total = 0

    def flush(self) -> None:
        if not self.rows:
            return
        cols = list(zip(*self.rows, strict=True))
        arrays = [
            pa.array(cols[0], pa.string()),
            pa.array(cols[1], pa.int32()),
            pa.array(cols[2], pa.string()),
            pa.array(cols[3], pa.string()),
            pa.array(cols[4], pa.int64()),
            pa.array(cols[5], pa.string()),
            pa.array(self.srcs, pa.int32()),
            pa.array(self.lines, pa.int64()),
        ]
        table = pa.Table.from_arrays(arrays, schema=_SPILL_SCHEMA)
        path = self.directory / f"spill-{len(self.files):05d}.parquet"
        pq.write_table(table, path, compression="snappy")
        self.files.append(str(path))
        self.total += len(self.rows)
        self.rows, self.srcs, self.lines = [], [], []


class _Quarantine:
    """Rejected records as gzip JSON lines, written deterministically (mtime 0) so reruns give equal bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")  # closed in close(), after the gzip trailer
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0)
        self._sha = hashlib.sha256()
        self.count = 0
        self.by_reason: Counter[str] = Counter()
        self.by_cause: Counter[str] = Counter()

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        self._gz.write(data)
        self._sha.update(data)
        self.count += 1
        self.by_reason[record["reason"]] += 1
        if "cause" in record:
            self.by_cause[record["cause"]] += 1

    def close(self) -> str:
        self._gz.close()
        self._file.close()
        return "sha256:" + self._sha.hexdigest()


def _raw_fields(data: bytes) -> dict[str, str]:
    try:
        return {"raw": data.decode("utf-8"), "raw_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"raw": base64.b64encode(data).decode("ascii"), "raw_encoding": "base64"}


def _hash_rows(sha: Any, batch: pa.RecordBatch) -> None:
    """Feed the canonical serialisation of ``batch``'s rows (see CHECKSUM_ALGORITHM) into ``sha``."""
    if batch.num_rows == 0:
        return
    client_event = batch.column("client_event")
    parts = [
        batch.column("event_id"),
        pc.cast(batch.column("user_id"), pa.string()),
        batch.column("device_id"),
        pc.cast(pc.cast(batch.column("client_timestamp"), pa.int64()), pa.string()),
        batch.column("countrycode"),
        pc.binary_join_element_wise(pc.cast(pc.utf8_length(client_event), pa.string()), client_event, ":"),
    ]
    rows = pc.binary_join_element_wise(pc.binary_join_element_wise(*parts, "\t"), "", "\n")
    rows = rows.cast(pa.string())
    if rows.null_count:
        raise CompactionError(f"{rows.null_count} output rows have a null column; the schema forbids nulls")
    _, offsets_buf, data_buf = rows.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(rows) + 1, offset=rows.offset * 4)
    sha.update(memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])])


def content_checksum_of_table(table: pa.Table) -> str:
    """The content checksum of rows already in output order (used by tests and by verification tools)."""
    sha = hashlib.sha256()
    for batch in table.cast(EVENTS_SCHEMA).to_batches():
        _hash_rows(sha, batch)
    return "sha256:" + sha.hexdigest()


_PAYLOAD_COLUMNS = ("user_id", "device_id", "client_event", "ts_ms", "countrycode")


def _shifted(column: pa.Array, carry: pa.Array | None) -> pa.Array:
    """``column`` moved down one row, the previous batch's last value (or null) in front."""
    head = carry if carry is not None else pa.nulls(1, column.type)
    return pa.concat_arrays([head, column.slice(0, len(column) - 1)])


class _FirstPerEventId:
    """Streaming dedup over rows sorted by (event_id, ts_ms, src, line): keep each event_id's first row.

    Also counts event_ids whose copies disagree on the payload (in a sorted group, some row differs from the
    row before it), a sign of id collisions or producer bugs rather than at-least-once redelivery.
    """

    def __init__(self) -> None:
        self._last: pa.RecordBatch | None = None
        self._last_conflict: pa.Array | None = None
        self.rows = 0
        self.kept = 0
        self.conflicting = 0

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        if n == 0:
            return batch
        last = self._last
        ids = batch.column("event_id")
        first = pc.fill_null(pc.not_equal(ids, _shifted(ids, last and last.column("event_id"))), True)
        differs = None
        for name in _PAYLOAD_COLUMNS:
            col = batch.column(name)
            ne = pc.fill_null(pc.not_equal(col, _shifted(col, last and last.column(name))), False)
            differs = ne if differs is None else pc.or_(differs, ne)
        conflict = pc.and_(pc.invert(first), differs)
        if pc.any(conflict).as_py():
            conflict_ids = ids.filter(conflict)
            new = pc.fill_null(pc.not_equal(conflict_ids, _shifted(conflict_ids, self._last_conflict)), True)
            self.conflicting += pc.sum(new).as_py() or 0
            self._last_conflict = conflict_ids.slice(len(conflict_ids) - 1, 1)
        self._last = batch.slice(n - 1, 1)
        kept = batch.filter(first)
        self.rows += n
        self.kept += kept.num_rows
        return kept


def _to_events_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            batch.column("event_id").cast(pa.string()),
            batch.column("user_id").cast(pa.int32()),
            batch.column("device_id").cast(pa.string()),
            batch.column("client_event").cast(pa.string()),
            batch.column("ts_ms").cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            batch.column("countrycode").cast(pa.string()),
        ],
        schema=EVENTS_SCHEMA,
    )


def _dedup_sort_write(
    spill_files: list[str],
    out_path: Path,
    work_dir: Path,
    *,
    memory_limit: str,
    threads: int,
    row_group_rows: int,
) -> dict[str, Any]:
    """Dedup + sort the spill with two external DuckDB sorts; write the Parquet; return counts and checksum.

    Sorts rather than a window or a hash aggregate: DuckDB's sort spills to ``temp_directory`` reliably within
    ``memory_limit`` (a ROW_NUMBER window over every event_id ran out of memory at 10M rows / 256 MB). Pass 1
    sorts by (event_id, ts_ms, src, line) and keeps each id's first row in a local file; pass 2 sorts that by
    (user_id, device_id, ts_ms, event_id) into the output while hashing the canonical rows.
    """
    sha = hashlib.sha256()
    dedup = _FirstPerEventId()
    written = 0
    writer = pq.ParquetWriter(
        out_path,
        EVENTS_SCHEMA,
        compression="zstd",
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
    )
    try:
        if spill_files:
            (work_dir / "duckdb").mkdir(exist_ok=True)
            con = duckdb.connect(
                config={
                    "memory_limit": memory_limit,
                    "threads": threads,
                    "temp_directory": str(work_dir / "duckdb"),
                    "preserve_insertion_order": False,
                }
            )
            try:
                source = "read_parquet([" + ", ".join(_sql_str(f) for f in spill_files) + "])"
                dedup_path = work_dir / "dedup.parquet"
                first_pass = con.sql(
                    f"SELECT event_id, user_id, device_id, client_event, ts_ms, countrycode FROM {source} "
                    "ORDER BY event_id, ts_ms, src, line"
                ).to_arrow_reader(row_group_rows)
                with pq.ParquetWriter(dedup_path, first_pass.schema, compression="snappy") as dedup_writer:
                    for batch in first_pass:
                        dedup_writer.write_batch(dedup(batch))
                second_pass = con.sql(
                    f"SELECT * FROM read_parquet({_sql_str(str(dedup_path))}) "
                    "ORDER BY user_id, device_id, ts_ms, event_id"
                ).to_arrow_reader(row_group_rows)
                for batch in second_pass:
                    out = _to_events_batch(batch)
                    writer.write_batch(out, row_group_size=row_group_rows)
                    _hash_rows(sha, out)
                    written += out.num_rows
            finally:
                con.close()
    finally:
        writer.close()
    return {
        "spilled": dedup.rows,
        "distinct": dedup.kept,
        "conflicting": dedup.conflicting,
        "written": written,
        "file_rows": pq.ParquetFile(out_path).metadata.num_rows,
        "checksum": "sha256:" + sha.hexdigest(),
    }


def _delete_keys(s3_client: Any, bucket: str, keys: list[str]) -> None:
    for i in range(0, len(keys), 1000):
        batch = keys[i : i + 1000]
        resp = s3_client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        errors = resp.get("Errors") or []
        if errors:
            shown = ", ".join(f"{e.get('Key')}: {e.get('Code')} {e.get('Message')}" for e in errors[:5])
            raise CompactionError(f"could not delete {len(errors)} s3 object(s) in {bucket}: {shown}")


def compact_hour(
    s3_client: Any,
    bucket: str,
    hour_start: datetime,
    *,
    settings: Settings | None = None,
    now: datetime,
    code_version: str,
    max_future_skew: timedelta = timedelta(minutes=5),
    staging_dir: str | os.PathLike | None = None,
    chunk_rows: int = 100_000,
    row_group_rows: int = 262_144,
    duckdb_memory_limit: str = "256MB",
    duckdb_threads: int = 2,
) -> CompactionResult:
    """Compact event hour ``hour_start`` of ``bucket`` and publish data, quarantine and manifest atomically.

    ``now`` is the processing time used for the ``timestamp_in_future`` check (records later than
    ``now + max_future_skew`` are quarantined); ``staging_dir`` is the local directory for spill and DuckDB
    temp files (a temporary directory under it is removed afterwards). Raises :class:`CompactionError`
    (nothing is published) when an object cannot be read or the counts do not add up.

    An hour without objects still gets an empty Parquet file with the schema and a manifest of zeros, so
    every compacted hour has the same shape for Glue/Athena and the reconciliation. Reruns over the same
    objects give the same rows, quarantine and content checksum; the only input that can change a rerun's
    result is ``now`` (a record more than ``max_future_skew`` ahead of it is quarantined, and may pass once
    time has moved on).
    """
    started = time.perf_counter()
    settings = settings or Settings()
    hour = layout.normalize_hour(hour_start)
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    if not code_version or not isinstance(code_version, str):
        raise ValueError(f"code_version must be a non-empty string, got {code_version!r}")
    if max_future_skew < timedelta(0):
        raise ValueError(f"max_future_skew must not be negative, got {max_future_skew}")
    for name, value in (("chunk_rows", chunk_rows), ("row_group_rows", row_group_rows)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    event_date, event_hour = layout.hour_partition(hour)
    run_id = f"{hour:%Y%m%dT%H}-{uuid.uuid4().hex[:12]}"
    stages: dict[str, float] = {}

    raw_objects = layout.list_raw_objects(s3_client, bucket, settings, hour)
    error_objects = layout.list_error_objects(s3_client, bucket, settings, hour)
    stages["list"] = time.perf_counter() - started

    with tempfile.TemporaryDirectory(prefix=f"compaction-{run_id}-", dir=staging_dir) as tmp:
        work = Path(tmp)
        spill = _Spill(work, chunk_rows)
        quarantine = _Quarantine(work / layout.QUARANTINE_FILE_NAME)
        lines_read = 0
        error_records_read = 0
        sizes: Counter[str] = Counter()
        t0 = time.perf_counter()
        try:
            validator = RecordValidator(hour, now, max_future_skew)
            validate = validator.validate
            for src, obj in enumerate(raw_objects):
                key = obj["key"]
                line_no = 0
                rows, srcs, line_nos = spill.rows, spill.srcs, spill.lines
                for block in _read_blocks(s3_client, bucket, obj, sizes):
                    for data in block:
                        line_no += 1
                        result = validate(data)
                        if type(result) is tuple:
                            rows.append(result)
                            srcs.append(src)
                            line_nos.append(line_no)
                            if len(rows) >= chunk_rows:
                                spill.flush()
                                rows, srcs, line_nos = spill.rows, spill.srcs, spill.lines
                        else:
                            quarantine.write(
                                {
                                    "reason": result.reason,
                                    "detail": result.detail,
                                    "source_key": key,
                                    "line": line_no,
                                    **_raw_fields(data),
                                }
                            )
                lines_read += line_no
            spill.flush()
            stages["read_validate"] = time.perf_counter() - t0

            t0 = time.perf_counter()
            error_validator = RecordValidator(None, now, max_future_skew)
            for obj in error_objects:
                line_no = 0
                for block in _read_blocks(s3_client, bucket, obj, sizes):
                    for data in block:
                        line_no += 1
                        quarantine.write(
                            _firehose_error_quarantine(error_validator, obj["key"], line_no, data)
                        )
                error_records_read += line_no
            stages["error_records"] = time.perf_counter() - t0
        finally:
            quarantine_checksum = quarantine.close()

        t0 = time.perf_counter()
        data_path = work / layout.DATA_FILE_NAME
        stats = _dedup_sort_write(
            spill.files,
            data_path,
            work,
            memory_limit=duckdb_memory_limit,
            threads=duckdb_threads,
            row_group_rows=row_group_rows,
        )
        stages["dedup_sort_write"] = time.perf_counter() - t0

        valid = spill.total
        raw_quarantined = quarantine.count - quarantine.by_reason.get(FIREHOSE_PARTITIONING_FAILED, 0)
        duplicates_removed = valid - stats["distinct"]
        _check_counts(
            lines_read=lines_read,
            valid=valid,
            raw_quarantined=raw_quarantined,
            error_records_read=error_records_read,
            firehose_quarantined=quarantine.by_reason.get(FIREHOSE_PARTITIONING_FAILED, 0),
            stats=stats,
            duplicates_removed=duplicates_removed,
        )

        t0 = time.perf_counter()
        data_key = layout.compacted_hour_prefix(settings, hour) + layout.DATA_FILE_NAME
        outputs = {
            "data_files": [_output(data_key, data_path, rows=stats["written"])],
            "quarantine_files": [],
        }
        to_publish = [(data_path, data_key)]
        if quarantine.count:
            q_key = layout.quarantine_hour_prefix(settings, hour) + layout.QUARANTINE_FILE_NAME
            outputs["quarantine_files"].append(_output(q_key, quarantine.path, records=quarantine.count))
            to_publish.append((quarantine.path, q_key))
        staging_prefix = f"{layout.staging_root(settings)}{run_id}/"
        staged: list[tuple[str, str]] = []
        m_key = layout.manifest_key(settings, hour)
        try:
            for path, final_key in to_publish:
                staging_key = staging_prefix + final_key
                s3_client.upload_file(str(path), bucket, staging_key)
                staged.append((staging_key, final_key))
            stages["upload"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            _publish(s3_client, bucket, staged, settings, hour, m_key)
        except BaseException:
            _cleanup_staging(s3_client, bucket, [s for s, _ in staged])
            raise

    counts = {
        "raw_objects": len(raw_objects),
        "error_objects": len(error_objects),
        "input_bytes": sum(o["size"] for o in raw_objects) + sum(o["size"] for o in error_objects),
        "uncompressed_bytes": sizes["uncompressed_bytes"],
        "lines_read": lines_read,
        "error_records_read": error_records_read,
        "valid": valid,
        "duplicates_removed": duplicates_removed,
        "duplicates_conflicting": stats["conflicting"],
        "quarantined": quarantine.count,
        "quarantined_by_reason": dict(sorted(quarantine.by_reason.items())),
        "firehose_errors_by_cause": dict(sorted(quarantine.by_cause.items())),
        "written_rows": stats["written"],
    }
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "hour": _iso(hour),
        "event_date": event_date,
        "event_hour": event_hour,
        "bucket": bucket,
        "run_id": run_id,
        "code_version": code_version,
        "created_at": _iso(datetime.now(UTC)),
        "processing_time": _iso(now),
        "max_future_skew_seconds": max_future_skew.total_seconds(),
        "inputs": {"raw_objects": raw_objects, "error_objects": error_objects},
        "counts": counts,
        "outputs": outputs,
        "content_checksum": stats["checksum"],
        "checksum_algorithm": CHECKSUM_ALGORITHM,
        "quarantine_checksum": quarantine_checksum if quarantine.count else None,
    }
    s3_client.put_object(
        Bucket=bucket,
        Key=m_key,
        Body=json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"),
        ContentType="application/json",
    )
    stages["publish"] = time.perf_counter() - t0

    result = CompactionResult(
        hour=_iso(hour),
        event_date=event_date,
        event_hour=event_hour,
        run_id=run_id,
        code_version=code_version,
        raw_objects=len(raw_objects),
        error_objects=len(error_objects),
        input_bytes=counts["input_bytes"],
        uncompressed_bytes=counts["uncompressed_bytes"],
        lines_read=lines_read,
        error_records_read=error_records_read,
        valid=valid,
        duplicates_removed=duplicates_removed,
        duplicates_conflicting=stats["conflicting"],
        quarantined=quarantine.count,
        quarantined_by_reason=counts["quarantined_by_reason"],
        firehose_errors_by_cause=counts["firehose_errors_by_cause"],
        written_rows=stats["written"],
        data_keys=[o["key"] for o in outputs["data_files"]],
        quarantine_keys=[o["key"] for o in outputs["quarantine_files"]],
        manifest_key=m_key,
        content_checksum=stats["checksum"],
        seconds=round(time.perf_counter() - started, 3),
        stages={k: round(v, 3) for k, v in stages.items()},
    )
    log.info(
        "compacted %s: %d raw objects, %d lines, %d valid, %d duplicates removed, %d quarantined %s, "
        "%d rows written in %.1fs (%s)",
        result.hour,
        result.raw_objects,
        lines_read,
        valid,
        duplicates_removed,
        quarantine.count,
        counts["quarantined_by_reason"],
        result.written_rows,
        result.seconds,
        result.content_checksum,
    )
    if quarantine.by_cause.get(CAUSE_VALID):
        log.warning(
            "%d valid record(s) were found under the Firehose error prefix for arrival hour %s; they are "
            "quarantined, not compacted - re-drive them if Firehose failed for a transient reason",
            quarantine.by_cause[CAUSE_VALID],
            result.hour,
        )
    return result


def _output(key: str, path: Path, **extra: int) -> dict:
    return {"key": key, "size": path.stat().st_size, **extra}


def _firehose_error_quarantine(validator: RecordValidator, key: str, line_no: int, data: bytes) -> dict:
    """One Firehose error record -> its quarantine line, keeping the original record's text and the cause."""
    try:
        envelope = json.loads(data)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("rawData"), str):
            raise ValueError("no string field rawData")
        raw = base64.b64decode(envelope["rawData"], validate=True)
    except (ValueError, binascii.Error, RecursionError) as exc:
        return {
            "reason": FIREHOSE_PARTITIONING_FAILED,
            "cause": CAUSE_UNREADABLE_ERROR_RECORD,
            "detail": f"line is not a Firehose error record with base64 rawData ({exc}): {show(data)}",
            "source_key": key,
            "line": line_no,
            **_raw_fields(data),
        }
    code, message = envelope.get("errorCode"), envelope.get("errorMessage")
    result = validator.validate(raw)
    if isinstance(result, Rejection):
        cause, why = result.reason, result.detail
    else:
        cause, why = CAUSE_VALID, "the record itself passes validation"
    return {
        "reason": FIREHOSE_PARTITIONING_FAILED,
        "cause": cause,
        "detail": f"Firehose could not partition the record ({code}: {message}); {why}",
        "source_key": key,
        "line": line_no,
        **_raw_fields(raw),
        "error_code": code,
        "error_message": message,
        "arrival_timestamp": envelope.get("arrivalTimestamp"),
        "attempts_made": envelope.get("attemptsMade"),
    }


def _check_counts(
    *,
    lines_read: int,
    valid: int,
    raw_quarantined: int,
    error_records_read: int,
    firehose_quarantined: int,
    stats: dict,
    duplicates_removed: int,
) -> None:
    problems = []
    if lines_read != valid + raw_quarantined:
        problems.append(f"lines_read={lines_read} != valid={valid} + quarantined={raw_quarantined}")
    if error_records_read != firehose_quarantined:
        problems.append(
            f"error_records_read={error_records_read} != firehose_partitioning_failed={firehose_quarantined}"
        )
    if stats["spilled"] != valid:
        problems.append(f"rows in spill files={stats['spilled']} != valid={valid}")
    if stats["written"] != valid - duplicates_removed:
        problems.append(
            f"written={stats['written']} != valid={valid} - duplicates_removed={duplicates_removed}"
        )
    if stats["file_rows"] != stats["written"]:
        problems.append(f"rows in the Parquet footer={stats['file_rows']} != written={stats['written']}")
    if problems:
        raise CountMismatch("compaction counts do not add up, nothing published: " + "; ".join(problems))


def _publish(
    s3_client: Any,
    bucket: str,
    staged: list[tuple[str, str]],
    settings: Settings,
    hour: datetime,
    manifest_key: str,
) -> None:
    """Staging -> final keys; the old manifest goes first so no manifest describes files being replaced."""
    s3_client.delete_object(Bucket=bucket, Key=manifest_key)
    for staging_key, final_key in staged:
        s3_client.copy({"Bucket": bucket, "Key": staging_key}, bucket, final_key)
    keep = {final for _, final in staged}
    stale = [
        o["Key"]
        for prefix in (
            layout.compacted_hour_prefix(settings, hour),
            layout.quarantine_hour_prefix(settings, hour),
        )
        for o in layout.list_objects(s3_client, bucket, prefix)
        if o["Key"] not in keep
    ]
    if stale:
        log.info("deleting %d stale object(s) of %s: %s", len(stale), _iso(hour), stale)
        _delete_keys(s3_client, bucket, stale)
    _delete_keys(s3_client, bucket, [s for s, _ in staged])


def _cleanup_staging(s3_client: Any, bucket: str, keys: list[str]) -> None:
    if not keys:
        return
    try:
        _delete_keys(s3_client, bucket, keys)
    except Exception:  # the original error matters more; leftovers live under _staging/, outside the table
        log.exception("could not delete staging objects %s after a failed compaction", keys)

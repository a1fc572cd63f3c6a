"""The streaming stage of a compaction: read an hour's objects, validate every record, spill or quarantine it.

Memory stays bounded whatever the hour's size: objects are read a block of lines at a time, valid rows are
buffered as tuples and spilled every ``chunk_rows`` rows to a local Parquet chunk, and rejects go straight to
the gzip quarantine file. Every spilled row carries where it came from (object index in listing order, line
number) so deduplication can break ties by arrival order.

Firehose error objects of the hour (records Firehose could not partition) are never compacted: each of their
records is quarantined as ``firehose_partitioning_failed`` with the validator's finer cause.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from include.compaction import layout
from include.compaction.params import CompactionOptions
from include.compaction.quarantine import (
    QuarantineFile,
    QuarantineWriter,
    firehose_error_record,
    rejected_record,
)
from include.compaction.raw_objects import ByteCount, read_line_blocks
from include.compaction.validation import RecordValidator

#: Spill chunks: the validated columns (timestamp as epoch ms) plus where each row came from.
SPILL_SCHEMA = pa.schema(
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


class SpillWriter:
    """Valid rows buffered as tuples, spilled every ``chunk_rows`` to a local Parquet file.

    The reading loop appends to ``rows``/``srcs``/``lines`` directly (the hot path) and calls :meth:`flush`
    when ``rows`` reaches ``chunk_rows``; the lists are replaced, not cleared, on each flush.
    """

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
        table = pa.Table.from_arrays(arrays, schema=SPILL_SCHEMA)
        path = self.directory / f"spill-{len(self.files):05d}.parquet"
        pq.write_table(table, path, compression="snappy")
        self.files.append(str(path))
        self.total += len(self.rows)
        self.rows, self.srcs, self.lines = [], [], []


@dataclass(frozen=True)
class ValidatedHour:
    """What the streaming stage produced: the spill chunks, the quarantine file and the counts of what it read."""

    spill_files: list[str]
    #: Rows in the spill chunks (valid records, duplicates included).
    valid: int
    lines_read: int
    error_records_read: int
    uncompressed_bytes: int
    quarantine: QuarantineFile
    #: Seconds spent on raw objects (``read_validate``) and on Firehose error objects (``error_records``).
    seconds: dict[str, float]


def validate_and_spill(
    s3_client: Any,
    bucket: str,
    hour: datetime,
    raw_objects: list[dict],
    error_objects: list[dict],
    *,
    now: datetime,
    options: CompactionOptions,
    work_dir: Path,
) -> ValidatedHour:
    """Stream ``raw_objects`` (event hour ``hour``) and ``error_objects`` into spill chunks and the quarantine.

    Objects are read in the order given (the listing's key order, which is arrival order); a record later than
    ``now + options.max_future_skew`` is quarantined as ``timestamp_in_future``.
    """
    spill = SpillWriter(work_dir, options.chunk_rows)
    quarantine = QuarantineWriter(work_dir / layout.QUARANTINE_FILE_NAME)
    chunk_rows = options.chunk_rows
    uncompressed = ByteCount()
    seconds: dict[str, float] = {}
    lines_read = 0
    error_records_read = 0
    t0 = time.perf_counter()
    try:
        validate = RecordValidator(hour, now, options.max_future_skew).validate
        for src, obj in enumerate(raw_objects):
            key = obj["key"]
            line_no = 0
            rows, srcs, line_nos = spill.rows, spill.srcs, spill.lines
            for block in read_line_blocks(s3_client, bucket, obj, uncompressed):
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
                        quarantine.write(rejected_record(result, key, line_no, data))
            lines_read += line_no
        spill.flush()
        seconds["read_validate"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        error_validator = RecordValidator(None, now, options.max_future_skew)
        for obj in error_objects:
            line_no = 0
            for block in read_line_blocks(s3_client, bucket, obj, uncompressed):
                for data in block:
                    line_no += 1
                    quarantine.write(firehose_error_record(error_validator, obj["key"], line_no, data))
            error_records_read += line_no
        seconds["error_records"] = time.perf_counter() - t0
    finally:
        quarantined = quarantine.close()
    return ValidatedHour(
        spill_files=spill.files,
        valid=spill.total,
        lines_read=lines_read,
        error_records_read=error_records_read,
        uncompressed_bytes=uncompressed.total,
        quarantine=quarantined,
        seconds=seconds,
    )

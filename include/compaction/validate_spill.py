"""The streaming stage of a compaction: read an hour's objects, validate every record, spill or quarantine it.

Each object is read in blocks of whole lines. The vectorised fast path (:mod:`~include.compaction.fast_path`)
turns the canonical valid lines of a block into typed rows at once; every other line - in the order of the
object - goes with its original bytes to :class:`~include.compaction.validation.RecordValidator`, which keeps
it as a row or quarantines it with its reason, so the quarantine is exactly what validating every line in
Python gives.

Memory stays bounded whatever the hour's size: a few blocks of a few MB are in memory at a time (one per
validation thread, plus the one being read), valid rows are spilled every ``chunk_rows`` rows to a local Parquet
chunk, and rejects go straight to the gzip quarantine file. Every spilled
row carries where it came from (object index in listing order, line number) so deduplication can break ties by
arrival order.

Firehose error objects of the hour (records Firehose could not partition) are never compacted: each of their
records is quarantined as ``firehose_partitioning_failed`` with the validator's finer cause.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from include.compaction import layout
from include.compaction.fast_path import ROW_SCHEMA, ClassifiedBlock, FastPath, validated_rows
from include.compaction.params import CompactionOptions
from include.compaction.quarantine import (
    QuarantineFile,
    QuarantineWriter,
    firehose_error_record,
    rejected_record,
)
from include.compaction.raw_objects import ByteCount, read_blocks, read_line_blocks
from include.compaction.validation import RecordValidator

#: Spill chunks: the validated columns (:data:`~include.compaction.fast_path.ROW_SCHEMA`) plus where each row
#: came from.
SPILL_SCHEMA = pa.schema([*ROW_SCHEMA, ("src", pa.int32()), ("line", pa.int64())])


class SpillWriter:
    """Valid rows, as Arrow tables, written every ``chunk_rows`` rows to a local Parquet file."""

    def __init__(self, directory: Path, chunk_rows: int) -> None:
        self.directory = directory
        self.chunk_rows = chunk_rows
        self.files: list[str] = []
        self.total = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, rows: pa.Table, src: int, lines: np.ndarray) -> None:
        """Buffer ``rows`` (:data:`ROW_SCHEMA`) read from object ``src`` at 1-based line numbers ``lines``."""
        if not rows.num_rows:
            return
        where = [pa.array(np.full(rows.num_rows, src, dtype=np.int32)), pa.array(lines, pa.int64())]
        self._pending.append(pa.Table.from_arrays([*rows.columns, *where], schema=SPILL_SCHEMA))
        self._pending_rows += rows.num_rows
        while self._pending_rows >= self.chunk_rows:
            self._write(self.chunk_rows)

    def flush(self) -> None:
        if self._pending_rows:
            self._write(self._pending_rows)

    def _write(self, rows: int) -> None:
        table = pa.concat_tables(self._pending)
        rest = table.slice(rows)
        path = self.directory / f"spill-{len(self.files):05d}.parquet"
        # Written once to local disk, read back by DuckDB: no compression, no statistics, and dictionaries only
        # for the repetitive strings.
        pq.write_table(
            table.slice(0, rows),
            path,
            compression="none",
            use_dictionary=["device_id", "client_event", "countrycode"],
            write_statistics=False,
        )
        self.files.append(str(path))
        self.total += rows
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows


def _classified(
    blocks: Iterator[tuple[int, bytes]], fast_path: FastPath, threads: int
) -> Iterator[tuple[int, bytes, ClassifiedBlock]]:
    """``(src, data, classified block)`` in the order of ``blocks``, classified by ``threads`` threads.

    The fast path spends its time in Arrow and numpy, which release the GIL, so blocks are classified in
    parallel while this thread reads (decompresses) the next; at most ``threads + 1`` blocks are in memory.
    """
    if threads == 1:
        for src, data in blocks:
            yield src, data, fast_path.classify(data)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="compaction-fast-path") as pool:
        pending: deque[tuple[int, bytes, Future[ClassifiedBlock]]] = deque()
        try:
            for src, data in blocks:
                pending.append((src, data, pool.submit(fast_path.classify, data)))
                if len(pending) > threads:
                    src, data, future = pending.popleft()
                    yield src, data, future.result()
            while pending:
                src, data, future = pending.popleft()
                yield src, data, future.result()
        finally:
            for _, _, future in pending:
                future.cancel()


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
    uncompressed = ByteCount()
    seconds: dict[str, float] = {}
    lines_read = 0
    error_records_read = 0
    t0 = time.perf_counter()
    try:
        fast_path = FastPath(hour, now, options.max_future_skew)
        validate = RecordValidator(hour, now, options.max_future_skew).validate
        lines_of = [0] * len(raw_objects)  # lines of each object handled so far
        blocks = (
            (src, data)
            for src, obj in enumerate(raw_objects)
            for data in read_blocks(s3_client, bucket, obj, uncompressed)
        )
        for src, data, block in _classified(blocks, fast_path, options.validation_threads):
            first_line = lines_of[src] + 1
            spill.add(block.valid, src, block.valid_lines + first_line)
            accepted, accepted_lines = [], []
            slow = block.slow_lines
            for index, start, end in zip(
                slow.tolist(), block.starts[slow].tolist(), block.ends[slow].tolist(), strict=True
            ):
                raw = data[start:end]
                result = validate(raw)
                if type(result) is tuple:
                    accepted.append(result)
                    accepted_lines.append(first_line + index)
                else:
                    key = raw_objects[src]["key"]
                    quarantine.write(rejected_record(result, key, first_line + index, raw))
            if accepted:
                spill.add(validated_rows(accepted), src, np.array(accepted_lines, dtype=np.int64))
            lines_of[src] += block.lines
        lines_read = sum(lines_of)
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

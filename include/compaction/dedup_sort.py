"""Deduplicate the hour's spilled rows by event_id, sort them, and write the compacted Parquet file.

Two external DuckDB sorts rather than a window or a hash aggregate: DuckDB's sort spills to its
``temp_directory`` reliably within ``memory_limit`` (a ROW_NUMBER window over every event_id ran out of memory
at 10M rows / 256 MB).

1. Sort by (event_id, ts_ms, src, line) and keep each id's first row: the earliest client_timestamp, ties
   broken by arrival order (object in listing order, then line). Written to a local file.
2. Sort that by (user_id, device_id, ts_ms, event_id) into the output, written by pyarrow batch by batch with
   the exact column types while hashing the canonical rows (the content checksum).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from include.compaction.events_table import EVENTS_SCHEMA, hash_rows
from include.compaction.params import CompactionOptions

_PAYLOAD_COLUMNS = ("user_id", "device_id", "client_event", "ts_ms", "countrycode")


@dataclass(frozen=True)
class SortedOutput:
    """Counts of the dedup and write, each from its own source, and the output's content checksum."""

    #: Rows read back from the spill (pass 1).
    spilled: int
    #: Distinct event_ids kept (pass 1).
    distinct: int
    #: event_ids whose copies disagree on the payload.
    conflicting: int
    #: Rows written (pass 2).
    written: int
    #: Rows according to the written file's footer.
    file_rows: int
    checksum: str


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _shifted(column: pa.Array, carry: pa.Array | None) -> pa.Array:
    """``column`` moved down one row, the previous batch's last value (or null) in front."""
    head = carry if carry is not None else pa.nulls(1, column.type)
    return pa.concat_arrays([head, column.slice(0, len(column) - 1)])


class FirstPerEventId:
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


def dedup_sort_write(
    spill_files: list[str], out_path: Path, work_dir: Path, options: CompactionOptions
) -> SortedOutput:
    """Dedup + sort the spill chunks into ``out_path`` (zstd Parquet, EVENTS_SCHEMA); no spill: an empty file.

    DuckDB gets ``options.duckdb_memory_limit`` and ``options.duckdb_threads`` and spills to ``work_dir/duckdb``;
    batches of ``options.row_group_rows`` rows become the output's row groups.
    """
    row_group_rows = options.row_group_rows
    sha = hashlib.sha256()
    dedup = FirstPerEventId()
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
                    "memory_limit": options.duckdb_memory_limit,
                    "threads": options.duckdb_threads,
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
                    hash_rows(sha, out)
                    written += out.num_rows
            finally:
                con.close()
    finally:
        writer.close()
    return SortedOutput(
        spilled=dedup.rows,
        distinct=dedup.kept,
        conflicting=dedup.conflicting,
        written=written,
        file_rows=pq.ParquetFile(out_path).metadata.num_rows,
        checksum="sha256:" + sha.hexdigest(),
    )

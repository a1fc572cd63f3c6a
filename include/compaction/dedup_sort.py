"""Deduplicate the hour's spilled rows by event_id, sort them, and write the compacted Parquet file.

Most event_ids occur once (duplicates come from at-least-once redelivery), so only the rows of duplicated ids are
sorted by id; everything else is sorted once, straight into the output order, on the spill's fixed-width
integer keys (:mod:`~include.compaction.sort_keys`). DuckDB's hash aggregate, joins and sort all spill to its
``temp_directory`` within ``memory_limit`` (a ROW_NUMBER window over every event_id ran out of memory at 10M
rows / 256 MB, so there is none).

1. The event_ids that occur more than once (a hash aggregate).
2. Their rows, sorted by (event_id, ts_ms, src, line); each id keeps its first row: the earliest
   client_timestamp, ties broken by arrival order (object in listing order, then line). Written to a local file.
3. The rows of every other id plus those first rows, sorted by (user_id, device_id, ts_ms, event_id) into the
   output, written by pyarrow batch by batch with the exact column types while a second thread hashes the
   canonical rows (the content checksum).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from include.compaction import sort_keys
from include.compaction.events_table import EVENTS_SCHEMA, hash_rows
from include.compaction.params import CompactionOptions

_PAYLOAD_COLUMNS = ("user_id", "device_id", "client_event", "ts_ms", "countrycode")
#: The event_id as DuckDB groups, joins and sorts it (see :mod:`~include.compaction.sort_keys`).
_ID = "id_hi, id_lo"
_COLUMNS = f"{_ID}, " + ", ".join(_PAYLOAD_COLUMNS)


@dataclass(frozen=True)
class SortedOutput:
    """Counts of the dedup and write, each from its own source, and the output's content checksum."""

    #: Rows in the spill files (their footers).
    spilled: int
    #: Distinct event_ids: the spilled rows less the extra copies of the duplicated ids.
    distinct: int
    #: event_ids whose copies disagree on the payload.
    conflicting: int
    #: Rows written (step 3).
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


def _with_event_id(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with the ``event_id`` string rebuilt from its (id_hi, id_lo) columns, in front."""
    ids = sort_keys.uuid_strings(batch.column("id_hi").to_numpy(), batch.column("id_lo").to_numpy())
    return pa.RecordBatch.from_arrays([ids, *batch.columns], names=["event_id", *batch.schema.names])


def _to_events_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            sort_keys.uuid_strings(batch.column("id_hi").to_numpy(), batch.column("id_lo").to_numpy()),
            batch.column("user_id").cast(pa.int32()),
            sort_keys.device_strings(batch.column("device_id").to_numpy()),
            batch.column("client_event").cast(pa.string()),
            batch.column("ts_ms").cast(pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            sort_keys.country_strings(batch.column("countrycode").to_numpy()),
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
    sha = hashlib.sha256()
    dedup = FirstPerEventId()
    spilled = written = 0
    writer = pq.ParquetWriter(
        out_path,
        EVENTS_SCHEMA,
        compression="zstd",
        # Dictionaries for the repeating strings only: an id is unique and a time nearly so, so their dictionaries
        # would only be built to be dropped. Times sorted within a key are small deltas: DELTA_BINARY_PACKED
        # makes that column 0.2 -> 0.07 s to encode for 2 M rows and the file 42 % smaller than a dictionary did.
        use_dictionary=["user_id", "device_id", "client_event", "countrycode"],
        column_encoding={"client_timestamp": "DELTA_BINARY_PACKED"},
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
                spilled = con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
                # A hash aggregate: sorting the ids and comparing neighbours was no faster for 2 M rows and 50 %
                # slower for 10 M within the default 256 MB memory_limit.
                con.execute(
                    f"CREATE TEMP TABLE duplicated AS SELECT {_ID} FROM {source} "
                    f"GROUP BY {_ID} HAVING count(*) > 1"
                )
                first_rows = work_dir / "dedup.parquet"
                _first_rows_of_duplicates(con, source, dedup, first_rows, options.row_group_rows)
                output_rows = con.sql(
                    f"SELECT {_COLUMNS} FROM {source} ANTI JOIN duplicated USING ({_ID}) "
                    f"UNION ALL SELECT {_COLUMNS} FROM read_parquet({_sql_str(str(first_rows))}) "
                    f"ORDER BY user_id, device_id, ts_ms, {_ID}"
                ).to_arrow_reader(options.row_group_rows)
                written = _write_and_hash(output_rows, writer, sha, options.row_group_rows)
            finally:
                con.close()
    finally:
        writer.close()
    return SortedOutput(
        spilled=spilled,
        distinct=spilled - dedup.rows + dedup.kept,
        conflicting=dedup.conflicting,
        written=written,
        file_rows=pq.ParquetFile(out_path).metadata.num_rows,
        checksum="sha256:" + sha.hexdigest(),
    )


def _first_rows_of_duplicates(
    con: duckdb.DuckDBPyConnection, source: str, dedup: FirstPerEventId, path: Path, batch_rows: int
) -> None:
    """Write the first row of each duplicated event_id (table ``duplicated``) to ``path``."""
    rows = con.sql(
        f"SELECT {_COLUMNS} FROM {source} SEMI JOIN duplicated USING ({_ID}) ORDER BY {_ID}, ts_ms, src, line"
    ).to_arrow_reader(batch_rows)
    with pq.ParquetWriter(path, rows.schema.insert(0, pa.field("event_id", pa.string()))) as out:
        for batch in rows:
            out.write_batch(dedup(_with_event_id(batch)))


def _write_and_hash(
    rows: pa.RecordBatchReader, writer: pq.ParquetWriter, sha: Any, row_group_rows: int
) -> int:
    """Write ``rows`` as the output's row groups while a second thread hashes them; returns the rows written.

    Encoding (the writer) and hashing release the GIL, so they overlap; batches are hashed one after another,
    in file order.
    """
    written = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compaction-checksum") as hasher:
        hashed: Future[None] | None = None
        for batch in rows:
            out = _to_events_batch(batch)
            if hashed is not None:
                hashed.result()
            hashed = hasher.submit(hash_rows, sha, out)
            writer.write_batch(out, row_group_size=row_group_rows)
            written += out.num_rows
        if hashed is not None:
            hashed.result()
    return written

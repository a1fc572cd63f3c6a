"""The compacted events table: its Parquet schema and the content checksum of its rows.

The checksum hashes a canonical serialisation of the rows in file order (not the file's bytes), so it is the
same for equal rows whatever the Parquet writer's version, and a verification tool can recompute it from the
table alone (:func:`content_checksum_of_table`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from include.compaction.errors import CompactionError

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

CHECKSUM_ALGORITHM = (
    "sha256 over the rows in file order, each serialised as UTF-8 "
    "'event_id\\tuser_id\\tdevice_id\\tclient_timestamp_epoch_ms\\tcountrycode\\t"
    "<len(client_event) in code points>:client_event\\n'"
)


def hash_rows(sha: Any, batch: pa.RecordBatch) -> None:
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
        # the last field carries the row's newline: one join fewer over the whole batch
        pc.binary_join_element_wise(
            pc.cast(pc.utf8_length(client_event), pa.string()), ":", client_event, "\n", ""
        ),
    ]
    rows = pc.binary_join_element_wise(*parts, "\t")
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
        hash_rows(sha, batch)
    return "sha256:" + sha.hexdigest()

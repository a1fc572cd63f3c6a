"""Hourly compaction of raw Firehose JSON into deduplicated, sorted Parquet, with quarantine and manifest.

The DAG calls :func:`compact_hour` per hour, :func:`find_late_objects` to detect raw data that arrived after
an hour was compacted, and :func:`ensure_partition` to register the hour in Glue.
"""

from include.compaction.catalog import (
    compacted_events_table_input,
    ensure_partition,
    quarantine_table_input,
    raw_events_table_input,
)
from include.compaction.compactor import (
    CHECKSUM_ALGORITHM,
    EVENTS_SCHEMA,
    CompactionError,
    CompactionResult,
    CountMismatch,
    RawObjectUnreadable,
    compact_hour,
    content_checksum_of_table,
)
from include.compaction.ctas import render_compaction_ctas
from include.compaction.manifest import find_late_objects, hour_is_compacted, read_manifest
from include.compaction.validation import QUARANTINE_REASONS, RECORD_REASONS, RecordValidator, Rejection

__all__ = [
    "CHECKSUM_ALGORITHM",
    "EVENTS_SCHEMA",
    "QUARANTINE_REASONS",
    "RECORD_REASONS",
    "CompactionError",
    "CompactionResult",
    "CountMismatch",
    "RawObjectUnreadable",
    "RecordValidator",
    "Rejection",
    "compact_hour",
    "compacted_events_table_input",
    "content_checksum_of_table",
    "ensure_partition",
    "find_late_objects",
    "hour_is_compacted",
    "quarantine_table_input",
    "raw_events_table_input",
    "read_manifest",
    "render_compaction_ctas",
]

"""Hourly compaction of raw Firehose JSON into deduplicated, sorted Parquet, with quarantine and manifest.

The DAG calls :func:`compact_hour` per hour (tuned by :class:`CompactionOptions`; the DAG's params are
:class:`CompactionParams`), :func:`find_late_objects` to detect raw data that arrived after an hour was
compacted, and :func:`ensure_partition` to register the hour in Glue.

The names below are imported on first use, so a DAG file can import :mod:`include.compaction.params` (its
trigger form's source) without loading DuckDB and pyarrow at parse time.
"""

from __future__ import annotations

from include.lazy_exports import lazy_exports

_EXPORTS = {
    "compacted_events_table_input": "include.compaction.catalog",
    "ensure_partition": "include.compaction.catalog",
    "quarantine_table_input": "include.compaction.catalog",
    "raw_events_table_input": "include.compaction.catalog",
    "compact_hour": "include.compaction.compactor",
    "render_compaction_ctas": "include.compaction.ctas",
    "CompactionError": "include.compaction.errors",
    "CountMismatch": "include.compaction.errors",
    "RawObjectUnreadable": "include.compaction.errors",
    "CHECKSUM_ALGORITHM": "include.compaction.events_table",
    "EVENTS_SCHEMA": "include.compaction.events_table",
    "content_checksum_of_table": "include.compaction.events_table",
    "find_late_objects": "include.compaction.manifest",
    "hour_is_compacted": "include.compaction.manifest",
    "read_manifest": "include.compaction.manifest",
    "CompactionOptions": "include.compaction.params",
    "CompactionParams": "include.compaction.params",
    "CompactionResult": "include.compaction.result",
    "QUARANTINE_REASONS": "include.compaction.validation",
    "RECORD_REASONS": "include.compaction.validation",
    "RecordValidator": "include.compaction.validation",
    "Rejection": "include.compaction.validation",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

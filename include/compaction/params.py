"""What a compaction can be told, declared once: defaults, bounds and help for the code and the DAG's form.

:class:`CompactionOptions` is what :func:`include.compaction.compactor.compact_hour` uses (the future-skew
window of validation and the resources of the spill, sort and write). :class:`CompactionParams` adds what the
``clickstream_compaction`` DAG does around it (how long to wait for an hour's data, what to do with data that
arrives after its hour was compacted). Each field is declared with :func:`include.dag_params.param`, so the
DAG's ``Param``s (``airflow_params(CompactionParams)``) and the checks here cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from include.dag_params import check_fields, from_mapping, param

ON_LATE_DATA = ("recompact", "alert")


@dataclass(frozen=True)
class CompactionOptions:
    """How one hour is compacted; every instance is valid (checked on construction, errors name the field)."""

    max_future_skew_seconds: int = param(
        300,
        "Records whose client_timestamp is more than this many seconds after the processing time are "
        "quarantined as timestamp_in_future (client clock skew).",
        minimum=0,
        maximum=86_400,
    )
    duckdb_memory_limit_mb: int = param(
        256,
        "DuckDB's memory_limit in MB for deduplicating and sorting the hour; beyond it DuckDB spills to "
        "local_work_dir, so it bounds the worker's memory, not the size of an hour.",
        minimum=64,
        maximum=65_536,
    )
    duckdb_threads: int = param(
        2, "DuckDB threads for deduplicating and sorting the hour.", minimum=1, maximum=64
    )
    chunk_rows: int = param(
        100_000,
        "Valid rows held in memory before they are spilled to a local Parquet chunk.",
        minimum=1,
        maximum=10_000_000,
    )
    row_group_rows: int = param(
        262_144,
        "Rows per row group of the compacted Parquet file (and per batch read back from DuckDB).",
        minimum=1,
        maximum=10_000_000,
    )
    local_work_dir: str = param(
        "",
        "Local directory for the spill chunks, DuckDB's temporary files and the Parquet file before upload "
        "(a temporary directory inside it is removed afterwards); empty: the system's temporary directory.",
    )

    validation_threads: int = param(
        2,
        "Threads that validate blocks of raw lines in parallel (the vectorised fast path), while the reading "
        "thread decompresses the next block; each holds one block of a few MB.",
        minimum=1,
        maximum=64,
    )

    def __post_init__(self) -> None:
        # Sizes first, in the words compact_hour has always used; then every field against its declaration.
        for name in ("chunk_rows", "row_group_rows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_fields(self)

    @property
    def max_future_skew(self) -> timedelta:
        return timedelta(seconds=self.max_future_skew_seconds)

    @property
    def duckdb_memory_limit(self) -> str:
        """The ``memory_limit`` setting as DuckDB reads it, e.g. ``"256MB"``."""
        return f"{self.duckdb_memory_limit_mb}MB"


@dataclass(frozen=True)
class CompactionParams(CompactionOptions):
    """The ``clickstream_compaction`` DAG's params: the compaction options plus waiting and late data.

    The wait adds Firehose's buffering interval from :attr:`include.config.Settings.firehose_buffer_seconds`
    (what the delivery stream is provisioned with), not from a param that could disagree with it. Data that
    arrives later than the wait is not lost: ``check_late_data`` finds it.
    """

    allowed_lateness_seconds: int = param(
        300,
        "How long after the end of the hour its events may still arrive and be part of the first compaction; "
        "wait_for_raw_data waits this plus the delivery stream's buffering interval "
        "(CLICKSTREAM_FIREHOSE_BUFFER_SECONDS).",
        minimum=0,
        maximum=86_400,
    )
    on_late_data: str = param(
        "recompact",
        "What to do when raw objects land in an hour after it was compacted: recompact the hour, or alert "
        "(SNS) and leave it as it is.",
        enum=ON_LATE_DATA,
    )
    late_check_hours: int = param(
        24,
        "How many hours before this one check_late_data compares with their manifests.",
        minimum=0,
        maximum=24 * 14,
    )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> CompactionParams:
        """Params from a mapping (DAG params, ``--conf``); missing keys take their defaults, unknown ones fail."""
        return from_mapping(cls, values, "compaction")

    @classmethod
    def coerce(cls, value: CompactionParams | Mapping[str, Any] | None) -> CompactionParams:
        return value if isinstance(value, CompactionParams) else cls.from_dict(value)

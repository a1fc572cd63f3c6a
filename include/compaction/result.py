"""What one compaction run is and did: its identity, its counts, the check that they add up, and its result.

Every count is checked against an independent one before anything is published (lines read = valid +
quarantined, spilled rows = valid, written rows = distinct event_ids = valid - duplicates_removed, Parquet
footer rows = written); a mismatch raises :class:`CountMismatch` and nothing is published.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from include.compaction import layout
from include.compaction.dedup_sort import SortedOutput
from include.compaction.errors import CountMismatch
from include.compaction.validate_spill import ValidatedHour
from include.compaction.validation import FIREHOSE_PARTITIONING_FAILED


@dataclass(frozen=True)
class HourRun:
    """One run over one event hour: where, which hour, its id, the code that ran, and its processing time
    with the future-skew window validation used (the only inputs besides the objects that shape the output)."""

    bucket: str
    hour: datetime
    run_id: str
    code_version: str
    now: datetime
    max_future_skew: timedelta


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


def hour_counts(
    raw_objects: list[dict], error_objects: list[dict], validated: ValidatedHour, output: SortedOutput
) -> dict[str, Any]:
    """The manifest's ``counts`` (the same names as :class:`CompactionResult`'s count fields)."""
    quarantine = validated.quarantine
    return {
        "raw_objects": len(raw_objects),
        "error_objects": len(error_objects),
        "input_bytes": sum(o["size"] for o in raw_objects) + sum(o["size"] for o in error_objects),
        "uncompressed_bytes": validated.uncompressed_bytes,
        "lines_read": validated.lines_read,
        "error_records_read": validated.error_records_read,
        "valid": validated.valid,
        "duplicates_removed": validated.valid - output.distinct,
        "duplicates_conflicting": output.conflicting,
        "quarantined": quarantine.records,
        "quarantined_by_reason": quarantine.by_reason,
        "firehose_errors_by_cause": quarantine.by_cause,
        "written_rows": output.written,
    }


def check_counts(validated: ValidatedHour, output: SortedOutput) -> None:
    """Raise :class:`CountMismatch` listing every pair of independent counts that disagree."""
    valid, lines_read = validated.valid, validated.lines_read
    firehose_quarantined = validated.quarantine.by_reason.get(FIREHOSE_PARTITIONING_FAILED, 0)
    raw_quarantined = validated.quarantine.records - firehose_quarantined
    duplicates_removed = valid - output.distinct
    problems = []
    if lines_read != valid + raw_quarantined:
        problems.append(f"lines_read={lines_read} != valid={valid} + quarantined={raw_quarantined}")
    if validated.error_records_read != firehose_quarantined:
        problems.append(
            f"error_records_read={validated.error_records_read} != "
            f"firehose_partitioning_failed={firehose_quarantined}"
        )
    if output.spilled != valid:
        problems.append(f"rows in spill files={output.spilled} != valid={valid}")
    if output.written != valid - duplicates_removed:
        problems.append(
            f"written={output.written} != valid={valid} - duplicates_removed={duplicates_removed}"
        )
    if output.file_rows != output.written:
        problems.append(f"rows in the Parquet footer={output.file_rows} != written={output.written}")
    if problems:
        raise CountMismatch("compaction counts do not add up, nothing published: " + "; ".join(problems))


def compaction_result(
    run: HourRun,
    counts: dict[str, Any],
    outputs: dict[str, list[dict]],
    manifest_key: str,
    content_checksum: str,
    seconds: float,
    stages: dict[str, float],
) -> CompactionResult:
    event_date, event_hour = layout.hour_partition(run.hour)
    return CompactionResult(
        hour=layout.iso_utc(run.hour),
        event_date=event_date,
        event_hour=event_hour,
        run_id=run.run_id,
        code_version=run.code_version,
        **counts,
        data_keys=[o["key"] for o in outputs["data_files"]],
        quarantine_keys=[o["key"] for o in outputs["quarantine_files"]],
        manifest_key=manifest_key,
        content_checksum=content_checksum,
        seconds=round(seconds, 3),
        stages={k: round(v, 3) for k, v in stages.items()},
    )

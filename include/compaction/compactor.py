"""Hourly compaction: raw Firehose objects of one event hour -> one deduplicated, sorted, typed Parquet file.

:func:`compact_hour` runs the stages, each in its own module, with bounded memory whatever the hour's size:

1. List the raw objects of event hour H and the Firehose error objects of arrival hour H, sorted by key, so
   the result never depends on listing order (:mod:`~include.compaction.layout`).
2. Stream every object, validate each record - block by block in Arrow/numpy for the producer's canonical form
   (:mod:`~include.compaction.fast_path`), in Python for every other line - spill valid rows to local Parquet
   chunks and quarantine the rest with a reason (:mod:`~include.compaction.validate_spill`).
3. Deduplicate by event_id and sort with DuckDB, write the Parquet file and its content checksum
   (:mod:`~include.compaction.dedup_sort`).
4. Check every count against an independent one (:mod:`~include.compaction.result`), then upload to a staging
   prefix and publish, manifest last (:mod:`~include.compaction.publish`, :mod:`~include.compaction.manifest`).
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from include.compaction import dedup_sort, layout, publish, validate_spill
from include.compaction.dedup_sort import SortedOutput
from include.compaction.manifest import build_manifest, write_manifest
from include.compaction.params import CompactionOptions
from include.compaction.quarantine import CAUSE_VALID, QuarantineFile
from include.compaction.result import CompactionResult, HourRun, check_counts, compaction_result, hour_counts
from include.config import Settings

log = logging.getLogger(__name__)


def compact_hour(
    s3_client: Any,
    bucket: str,
    hour_start: datetime,
    *,
    now: datetime,
    code_version: str,
    settings: Settings | None = None,
    options: CompactionOptions | None = None,
) -> CompactionResult:
    """Compact event hour ``hour_start`` of ``bucket`` and publish data, quarantine and manifest atomically.

    ``now`` is the processing time used for the ``timestamp_in_future`` check (records later than
    ``now + options.max_future_skew`` are quarantined); ``options`` (default :class:`CompactionOptions`) also
    sets DuckDB's memory and threads, the chunk sizes and the local working directory. Raises
    :class:`~include.compaction.errors.CompactionError` (nothing is published) when an object cannot be read
    or the counts do not add up.

    An hour without objects still gets an empty Parquet file with the schema and a manifest of zeros, so
    every compacted hour has the same shape for Glue/Athena and the reconciliation. Reruns over the same
    objects give the same rows, quarantine and content checksum; the only input that can change a rerun's
    result is ``now`` (a record more than the allowed skew ahead of it is quarantined, and may pass once
    time has moved on).
    """
    started = time.perf_counter()
    settings = settings or Settings()
    options = CompactionOptions() if options is None else options
    hour = layout.normalize_hour(hour_start)
    _check_arguments(now, code_version, options)
    run = HourRun(
        bucket=bucket,
        hour=hour,
        run_id=f"{hour:%Y%m%dT%H}-{uuid.uuid4().hex[:12]}",
        code_version=code_version,
        now=now,
        max_future_skew=options.max_future_skew,
    )
    stages: dict[str, float] = {}

    raw_objects = layout.list_raw_objects(s3_client, bucket, settings, hour)
    error_objects = layout.list_error_objects(s3_client, bucket, settings, hour)
    stages["list"] = time.perf_counter() - started

    work_parent = options.local_work_dir or None
    with tempfile.TemporaryDirectory(prefix=f"compaction-{run.run_id}-", dir=work_parent) as tmp:
        work = Path(tmp)
        validated = validate_spill.validate_and_spill(
            s3_client, bucket, hour, raw_objects, error_objects, now=now, options=options, work_dir=work
        )
        stages.update(validated.seconds)

        t0 = time.perf_counter()
        data_path = work / layout.DATA_FILE_NAME
        output = dedup_sort.dedup_sort_write(validated.spill_files, data_path, work, options)
        stages["dedup_sort_write"] = time.perf_counter() - t0
        check_counts(validated, output)

        t0 = time.perf_counter()
        files, outputs = _outputs(settings, hour, data_path, output, validated.quarantine)
        publish.stage_and_publish(s3_client, bucket, settings, hour, run.run_id, files, stages)

    quarantine = validated.quarantine
    counts = hour_counts(raw_objects, error_objects, validated, output)
    manifest_key = layout.manifest_key(settings, hour)
    manifest = build_manifest(
        run,
        {"raw_objects": raw_objects, "error_objects": error_objects},
        counts,
        outputs,
        output.checksum,
        quarantine.checksum if quarantine.records else None,
    )
    write_manifest(s3_client, bucket, manifest_key, manifest)
    stages["publish"] = time.perf_counter() - t0 - stages["upload"]

    result = compaction_result(
        run, counts, outputs, manifest_key, output.checksum, time.perf_counter() - started, stages
    )
    log.info(
        "compacted %s: %d raw objects, %d lines, %d valid, %d duplicates removed, %d quarantined %s, "
        "%d rows written in %.1fs (%s)",
        result.hour,
        result.raw_objects,
        result.lines_read,
        result.valid,
        result.duplicates_removed,
        result.quarantined,
        result.quarantined_by_reason,
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


def _check_arguments(now: datetime, code_version: str, options: CompactionOptions) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError(f"now must be a timezone-aware datetime, got {now!r}")
    if not code_version or not isinstance(code_version, str):
        raise ValueError(f"code_version must be a non-empty string, got {code_version!r}")
    if not isinstance(options, CompactionOptions):
        raise TypeError(f"options must be a CompactionOptions, got {type(options).__name__} {options!r}")
    if options.local_work_dir and not Path(options.local_work_dir).is_dir():
        raise ValueError(f"local_work_dir must be an existing directory, got {options.local_work_dir!r}")


def _outputs(
    settings: Settings, hour: datetime, data_path: Path, output: SortedOutput, quarantine: QuarantineFile
) -> tuple[list[tuple[Path, str]], dict[str, list[dict]]]:
    """The files to publish as (local path, final key), and the manifest's ``outputs`` describing them.

    The quarantine file is published only when it holds records; otherwise publishing deletes an old one.
    """
    data_key = layout.compacted_hour_prefix(settings, hour) + layout.DATA_FILE_NAME
    files = [(data_path, data_key)]
    outputs: dict[str, list[dict]] = {
        "data_files": [_described(data_key, data_path, rows=output.written)],
        "quarantine_files": [],
    }
    if quarantine.records:
        q_key = layout.quarantine_hour_prefix(settings, hour) + layout.QUARANTINE_FILE_NAME
        files.append((quarantine.path, q_key))
        outputs["quarantine_files"].append(_described(q_key, quarantine.path, records=quarantine.records))
    return files, outputs


def _described(key: str, path: Path, **extra: int) -> dict:
    return {"key": key, "size": path.stat().st_size, **extra}

"""What the ``clickstream_compaction`` DAG's tasks do, with Airflow-free signatures so tests can call them.

``params`` is the DAG run's params (a mapping, possibly partial: missing keys take the defaults of
:class:`~include.compaction.params.CompactionParams`, unknown keys fail) or a ``CompactionParams``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from include.compaction.catalog import COMPACTED_TABLE, QUARANTINE_TABLE, ensure_partition
from include.compaction.compactor import compact_hour
from include.compaction.layout import normalize_hour
from include.compaction.manifest import find_late_objects, read_manifest
from include.compaction.params import CompactionParams
from include.config import settings

log = logging.getLogger(__name__)

Params = CompactionParams | Mapping[str, Any] | None


def raw_data_complete_at(hour_end: datetime, params: Params = None) -> datetime:
    """When the hour's raw data has landed: its end, plus how late its events may arrive
    (``allowed_lateness_seconds``), plus Firehose's buffering interval.

    The interval is :attr:`include.config.Settings.firehose_buffer_seconds`, the value the setup DAG
    provisions the delivery stream with, so the wait and the buffering cannot disagree.
    """
    p = CompactionParams.coerce(params)
    return hour_end + timedelta(seconds=p.allowed_lateness_seconds + settings().firehose_buffer_seconds)


def raw_data_landed(hour_end: datetime, params: Params = None, now: datetime | None = None) -> bool:
    """The ``wait_for_raw_data`` sensor's poke: has :func:`raw_data_complete_at` passed? (Past hours: at once.)"""
    target = raw_data_complete_at(hour_end, params)
    now = now or datetime.now(UTC)
    if now < target:
        log.info("raw data of the hour ending %s is complete at %s; now %s", hour_end, target, now)
    return now >= target


def compact_interval(hour_start: datetime, params: Params = None, now: datetime | None = None) -> dict:
    """Compact one event hour and return the counts (the asset event's extra)."""
    from include.aws import client
    from include.version import code_version

    p = CompactionParams.coerce(params)
    cfg = settings()
    result = compact_hour(
        client("s3"),
        cfg.bucket,
        normalize_hour(hour_start),
        settings=cfg,
        now=now or datetime.now(UTC),
        code_version=code_version(),
        options=p,
    )
    summary = result.to_dict()
    log.info(
        "compacted %s: %s lines, %s valid, %s duplicates removed, %s quarantined %s, %s rows written, checksum %s",
        summary["hour"],
        summary["lines_read"],
        summary["valid"],
        summary["duplicates_removed"],
        summary["quarantined"],
        summary["quarantined_by_reason"],
        summary["written_rows"],
        summary["content_checksum"],
    )
    return summary


def register_hour_partition(hour_start: datetime) -> dict[str, str]:
    """Create or update the hour's Glue partitions of compacted_events and quarantine_events."""
    from include.aws import client

    cfg, glue, hour = settings(), client("glue"), normalize_hour(hour_start)
    return {
        table: ensure_partition(glue, cfg.glue_database, table, cfg.bucket, hour, prefix=prefix)
        for table, prefix in (
            (COMPACTED_TABLE, cfg.compacted_prefix),
            (QUARANTINE_TABLE, cfg.quarantine_prefix),
        )
    }


def handle_late_data(hour_start: datetime, params: Params = None, now: datetime | None = None) -> dict:
    """Look back ``late_check_hours`` hours for raw objects that arrived after compaction; act on them.

    ``recompact`` compacts such an hour again (the new objects are included; a rerun is idempotent) and
    updates its partition; ``alert`` publishes an SNS alert listing them and leaves the hour as it is.
    """
    from include.aws import client
    from include.callbacks import send_alert

    p, cfg, s3 = CompactionParams.coerce(params), settings(), client("s3")
    hour = normalize_hour(hour_start)
    found: dict[str, list[dict[str, Any]]] = {}
    for back in range(1, p.late_check_hours + 1):
        earlier = hour - timedelta(hours=back)
        if read_manifest(s3, cfg.bucket, earlier, settings=cfg) is None:
            continue  # never compacted (e.g. before the DAG's first run): nothing to compare with
        late = find_late_objects(s3, cfg.bucket, earlier, settings=cfg)
        if late:
            found[earlier.isoformat()] = late
    actions: dict[str, Any] = {}
    for hour_iso, objects in sorted(found.items()):
        keys = [o["key"] for o in objects]
        log.warning("hour %s received %d objects after compaction: %s", hour_iso, len(keys), keys[:10])
        if p.on_late_data == "recompact":
            earlier = datetime.fromisoformat(hour_iso)
            result = compact_interval(earlier, p, now=now)
            register_hour_partition(earlier)
            actions[hour_iso] = {
                "late_objects": len(keys),
                "action": "recompacted",
                "written_rows": result["written_rows"],
            }
        else:
            send_alert(
                f"[clickstream] late raw data for {hour_iso}",
                f"{len(keys)} raw objects landed in hour {hour_iso} after it was compacted:\n"
                + "\n".join(keys),
            )
            actions[hour_iso] = {"late_objects": len(keys), "action": "alerted"}
    return {"checked_hours": p.late_check_hours, "late_hours": actions}

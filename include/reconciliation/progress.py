"""How far the stream has got, read from what it committed to S3: the largest ``window_end`` of its per-minute
metrics (``streaming/metrics/dt=…/hr=…/``, partitioned by window_start).

A metrics window is emitted when the watermark passes its end, and the sinks commit together at a checkpoint,
so a committed window_end >= T means every session the watermark closed before T is committed as well. The
reconciliation of hour H waits until the marker passes H's settle horizon: before that the stream's sessions
of H may still be open or uncommitted, and comparing them would report false differences.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from include.compaction.layout import list_objects
from include.config import Settings
from include.reconciliation import layout
from include.reconciliation.options import floor_hour, hours_between

METRICS = "metrics"


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)


def stream_progress(
    s3_client: Any, bucket: str, settings: Settings, horizon: datetime, now: datetime
) -> datetime | None:
    """A committed metrics window_end at or after ``horizon`` if there is one, else the largest one before it
    (None when nothing is committed).

    Partitions are read from the horizon's hour forward to ``now``'s hour and reading stops at the first
    window_end >= horizon, so the usual case (an hour just past its horizon) reads one or two partitions.
    """
    best: datetime | None = None
    for hour in hours_between(floor_hour(horizon - timedelta(minutes=1)), floor_hour(max(now, horizon))):
        prefix = f"{settings.streaming_prefix}{METRICS}/{layout.partition_path(hour)}"
        parts = [o for o in list_objects(s3_client, bucket, prefix) if layout.is_committed_part(o["Key"])]
        for obj in sorted(parts, key=lambda o: o["LastModified"], reverse=True):
            body = s3_client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode("utf-8")
            for line in body.splitlines():
                if line.strip():
                    end = _parse(json.loads(line)["window_end"])
                    if end >= horizon:
                        return end
                    best = end if best is None or end > best else best
    return best

"""Where one hour's inputs and outputs live in the lake bucket, derived from :class:`include.config.Settings`.

Kept in one module so the compactor, the late-data check, the Glue partitions and the tests agree on every
key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from include.config import Settings

DATA_FILE_NAME = "part-00000.parquet"
QUARANTINE_FILE_NAME = "quarantine-00000.jsonl.gz"
MANIFEST_FILE_NAME = "manifest.json"


def normalize_hour(hour_start: datetime, name: str = "hour_start") -> datetime:
    """The hour as an aware UTC datetime; refuse naive or unaligned values rather than guess."""
    if not isinstance(hour_start, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(hour_start).__name__} {hour_start!r}")
    if hour_start.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {hour_start.isoformat()}")
    hour = hour_start.astimezone(UTC)
    if hour.minute or hour.second or hour.microsecond:
        raise ValueError(f"{name} must be the start of an hour, got {hour.isoformat()}")
    # A plain datetime, also when Airflow hands us a pendulum DateTime (whose arithmetic differs).
    return datetime(hour.year, hour.month, hour.day, hour.hour, tzinfo=UTC)


def iso_utc(ts: datetime) -> str:
    """A timestamp as the manifests and logs write it: UTC ISO 8601 with ``Z``, e.g. ``2026-11-27T10:00:00Z``."""
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hour_partition(hour_start: datetime) -> tuple[str, str]:
    """(event_date, event_hour) partition values, e.g. ("2026-11-27", "10")."""
    hour = normalize_hour(hour_start)
    return hour.strftime("%Y-%m-%d"), hour.strftime("%H")


def _partition_path(hour_start: datetime) -> str:
    event_date, event_hour = hour_partition(hour_start)
    return f"event_date={event_date}/event_hour={event_hour}/"


def raw_hour_prefix(settings: Settings, hour_start: datetime) -> str:
    return settings.raw_prefix + _partition_path(hour_start)


def error_hour_suffix(hour_start: datetime) -> str:
    """Firehose's ``!{timestamp:yyyy/MM/dd/HH}`` for the arrival hour, under each error-output-type."""
    return normalize_hour(hour_start).strftime("%Y/%m/%d/%H/")


def compacted_hour_prefix(settings: Settings, hour_start: datetime) -> str:
    return settings.compacted_prefix + _partition_path(hour_start)


def quarantine_hour_prefix(settings: Settings, hour_start: datetime) -> str:
    return settings.quarantine_prefix + _partition_path(hour_start)


def manifest_key(settings: Settings, hour_start: datetime) -> str:
    return settings.manifest_prefix + _partition_path(hour_start) + MANIFEST_FILE_NAME


def staging_root(settings: Settings) -> str:
    """``compacted/_staging/``: beside, not inside, the table location so Athena never scans staged files."""
    parent = settings.compacted_prefix.rstrip("/").rpartition("/")[0]
    return f"{parent}/_staging/" if parent else "_staging/"


def list_objects(s3_client: Any, bucket: str, prefix: str) -> Iterator[dict]:
    """Every object under ``prefix`` (all pages)."""
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", ())


def list_common_prefixes(s3_client: Any, bucket: str, prefix: str) -> list[str]:
    paginator = s3_client.get_paginator("list_objects_v2")
    found: list[str] = []
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        found.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
    return found


def _describe(obj: dict) -> dict:
    last_modified = obj.get("LastModified")
    return {
        "key": obj["Key"],
        "etag": obj["ETag"],
        "size": int(obj["Size"]),
        "last_modified": last_modified.astimezone(UTC).isoformat() if last_modified else None,
    }


def list_raw_objects(s3_client: Any, bucket: str, settings: Settings, hour_start: datetime) -> list[dict]:
    """Raw Firehose objects of event hour H, sorted by key (which is arrival order within the partition)."""
    objs = [_describe(o) for o in list_objects(s3_client, bucket, raw_hour_prefix(settings, hour_start))]
    return sorted(objs, key=lambda o: o["key"])


def list_error_objects(s3_client: Any, bucket: str, settings: Settings, hour_start: datetime) -> list[dict]:
    """Firehose error objects of arrival hour H, under every error-output-type, sorted by key."""
    suffix = error_hour_suffix(hour_start)
    objs: list[dict] = []
    for type_prefix in list_common_prefixes(s3_client, bucket, settings.raw_error_prefix):
        objs.extend(_describe(o) for o in list_objects(s3_client, bucket, type_prefix + suffix))
    return sorted(objs, key=lambda o: o["key"])

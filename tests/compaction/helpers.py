"""Builders for raw Firehose objects and error records, shaped like the local companion and AWS write them."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import datetime, timedelta

from include.compaction import layout
from include.config import Settings
from include.events_schema import format_client_timestamp

BUCKET = "clickstream-lake"
SETTINGS = Settings(bucket=BUCKET)


def event(
    hour: datetime,
    *,
    offset_ms: int = 0,
    user_id: int = 42,
    device_id: str = "mobile",
    client_event: str = "view_beer_list",
    countrycode: str = "DE",
    event_id: str | None = None,
    seed: str = "",
) -> dict:
    """A valid event ``offset_ms`` into ``hour``; the event_id is derived from the inputs unless given."""
    ts = hour + timedelta(milliseconds=offset_ms)
    if event_id is None:
        event_id = str(
            uuid.uuid5(uuid.NAMESPACE_URL, f"{seed}/{user_id}/{device_id}/{offset_ms}/{client_event}")
        )
    return {
        "event_id": event_id,
        "user_id": user_id,
        "device_id": device_id,
        "client_event": client_event,
        "client_timestamp": format_client_timestamp(ts),
        "countrycode": countrycode,
    }


def line(record: dict | bytes | str) -> bytes:
    if isinstance(record, dict):
        return json.dumps(record, separators=(",", ":")).encode()
    return record.encode() if isinstance(record, str) else record


def raw_key(hour: datetime, arrival: str = "00-00", suffix: str = "a") -> str:
    """A Firehose-style object key in event hour ``hour``; ``arrival`` is mm-ss of the delivery time."""
    return (
        f"{layout.raw_hour_prefix(SETTINGS, hour)}clickstream-raw-delivery-1-"
        f"{hour:%Y-%m-%d-%H}-{arrival}-{suffix}.gz"
    )


def put_raw(s3, hour: datetime, records: list, *, arrival: str = "00-00", suffix: str = "a") -> str:
    key = raw_key(hour, arrival, suffix)
    body = b"".join(line(r) + b"\n" for r in records)
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body))
    return key


def error_record(
    data: bytes, hour: datetime, *, code: str = "DynamicPartitioning.MetadataExtractionFailed"
) -> dict:
    arrival_ms = int(hour.timestamp() * 1000) + 1234
    return {
        "attemptsMade": 1,
        "arrivalTimestamp": arrival_ms,
        "errorCode": code,
        "errorMessage": "Non JSON record provided",
        "attemptEndingTimestamp": arrival_ms + 10,
        "rawData": base64.b64encode(data).decode(),
    }


def put_errors(
    s3, arrival_hour: datetime, payloads: list[bytes], *, error_type: str = "partitioning-failed"
) -> str:
    key = (
        f"{SETTINGS.raw_error_prefix}{error_type}/{layout.error_hour_suffix(arrival_hour)}"
        f"clickstream-raw-delivery-1-{arrival_hour:%Y-%m-%d-%H}-00-00-err.gz"
    )
    body = b"".join(json.dumps(error_record(p, arrival_hour)).encode() + b"\n" for p in payloads)
    s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(body))
    return key

"""Reading the local data lake back in integration tests: raw Firehose objects and error records."""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field

RAW_KEY = re.compile(
    r"^raw/events/event_date=(?P<date>\d{4}-\d{2}-\d{2})/event_hour=(?P<hour>\d{2})/"
    r"(?P<stream>[A-Za-z0-9_.-]+)-(?P<version>\d+)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.gz$"
)
ERROR_KEY = re.compile(
    r"^raw/errors/(?P<type>[a-z-]+)/\d{4}/\d{2}/\d{2}/\d{2}/"
    r"(?P<stream>[A-Za-z0-9_.-]+)-(?P<version>\d+)-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}-[0-9a-f-]{36}\.gz$"
)


@dataclass
class Lake:
    raw_lines: list[tuple[str, bytes]] = field(default_factory=list)  # (key, line)
    error_records: list[tuple[str, dict]] = field(default_factory=list)  # (key, firehose error record)
    bad_keys: list[str] = field(default_factory=list)

    def raw_payloads(self) -> Counter:
        return Counter(line for _, line in self.raw_lines)

    def error_payloads(self) -> Counter:
        return Counter(base64.b64decode(rec["rawData"]) for _, rec in self.error_records)

    def event_ids(self) -> set[str]:
        ids = set()
        for _, line in self.raw_lines:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("event_id"), str):
                ids.add(obj["event_id"])
        return ids


def read_lake(s3, bucket: str) -> Lake:
    lake = Lake()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="raw/"):
        for obj in page.get("Contents", ()):
            key = obj["Key"]
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if RAW_KEY.match(key):
                assert body.endswith(b"\n"), f"{key}: records must be newline-delimited"
                lake.raw_lines.extend((key, line) for line in body.split(b"\n")[:-1])
            elif ERROR_KEY.match(key):
                lake.error_records.extend((key, json.loads(line)) for line in body.splitlines())
            else:
                lake.bad_keys.append(key)
    return lake


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def drain(sqs, queue_url: str) -> None:
    """Empty a queue by receiving and deleting (PurgeQueue is allowed only once a minute per queue)."""
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

"""The delivery buffer: read records grouped per partition, and the S3 objects one flush of it writes."""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from localdev.aws.firehose.sources import SourceRecord
from localdev.aws.firehose.streams import DestinationPlan


@dataclass
class Group:
    """The buffered records of one partition (or one error output type): one S3 object per flush."""

    partition_keys: dict[str, str] | None
    error_type: str | None
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    count: int = 0
    oldest_ms: int = 0


class Buffer:
    """Everything read since the last flush, per partition, with the newest source position per shard."""

    def __init__(self) -> None:
        self.groups: dict[tuple, Group] = {}
        self.size = 0
        self.count = 0
        self.started: float | None = None
        self.positions: dict[str, Any] = {}

    def add(
        self, key: tuple, payload: bytes, record: SourceRecord, keys: dict | None, error_type: str | None
    ) -> Group:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(keys, error_type, oldest_ms=record.arrival_ms)
        group.chunks.append(payload)
        group.size += len(payload)
        group.count += 1
        group.oldest_ms = min(group.oldest_ms, record.arrival_ms)
        self.size += len(payload)
        self.count += 1
        if self.started is None:
            self.started = time.monotonic()
        self.positions[record.shard] = record.position
        return group


def build_objects(
    plan: DestinationPlan, name: str, version: int, groups: Iterable[Group]
) -> list[tuple[str, bytes, Group]]:
    """(key, body, group) for each buffered group: one S3 object per partition per flush."""
    out = []
    for group in groups:
        when = datetime.fromtimestamp(group.oldest_ms / 1000, tz=plan.timezone)
        if group.error_type:
            prefix = plan.error_prefix.render(when, error_output_type=group.error_type)
        else:
            prefix = plan.prefix.render(when, partition_keys=group.partition_keys)
        key = f"{prefix}{name}-{version}-{when:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}{plan.extension}"
        body = b"".join(group.chunks)
        if plan.compression == "GZIP":
            body = gzip.compress(body, compresslevel=6, mtime=int(group.oldest_ms / 1000))
        out.append((key, body, group))
    return out

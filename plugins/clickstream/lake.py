"""Reading the lake bucket for the page, with a budget: a request never reads more than a bounded amount.

Listings go one day prefix at a time (``…/dt=YYYY-MM-DD/``) and keep the keys whose partition hour lies in the
window, so a week of hours costs at most eight listings per dataset. Objects are read newest hour first; when
the request's object or byte budget runs out, the oldest hours are left out and ``truncated`` says so.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from clickstream import paths
from include.compaction import layout

#: Defaults of a request's budget: enough for two days of a 20 events/s stream, bounded for any stream.
DEFAULT_MAX_OBJECTS = 3_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class LakeDataError(RuntimeError):
    """An object exists but cannot be read as what its key says it is; the message names bucket and key."""


@dataclass(frozen=True)
class LakeObject:
    key: str
    hour: datetime
    size: int


@dataclass
class Budget:
    """How much one request may still read; ``truncated`` turns True when something was left out."""

    max_objects: int = DEFAULT_MAX_OBJECTS
    max_bytes: int = DEFAULT_MAX_BYTES
    objects: int = 0
    bytes: int = 0
    truncated: bool = False
    skipped: list[str] = field(default_factory=list)

    def take(self, obj: LakeObject) -> bool:
        if self.objects + 1 > self.max_objects or self.bytes + obj.size > self.max_bytes:
            self.truncated = True
            self.skipped.append(obj.key)
            return False
        self.objects += 1
        self.bytes += obj.size
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "objects_read": self.objects,
            "bytes_read": self.bytes,
            "truncated": self.truncated,
            "objects_skipped": len(self.skipped),
        }


class Lake:
    """The lake bucket seen through an S3 client; every method names bucket and key in its errors."""

    def __init__(self, s3_client: Any, bucket: str) -> None:
        self.s3 = s3_client
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def objects_in_window(
        self, day_prefix: Callable[[str], str], window: paths.HourWindow
    ) -> list[LakeObject]:
        """Data files under each day's prefix whose partition hour is in the window, newest hour first."""
        found: list[LakeObject] = []
        for day in window.days():
            for obj in layout.list_objects(self.s3, self.bucket, day_prefix(day)):
                hour = paths.hour_of_key(obj["Key"])
                if hour is not None and window.contains(hour) and paths.is_data_file(obj["Key"]):
                    found.append(LakeObject(obj["Key"], hour, int(obj["Size"])))
        return sorted(found, key=lambda o: (-o.hour.timestamp(), o.key))

    def read_bytes(self, key: str) -> bytes | None:
        """The object's bytes (gunzipped when it is GZIP), or None when it does not exist."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        if body[:2] == b"\x1f\x8b":
            try:
                return gzip.decompress(body)
            except (OSError, EOFError) as exc:
                raise LakeDataError(
                    f"{self.uri(key)} looks like GZIP but does not decompress: {exc}"
                ) from exc
        return body

    def read_json(self, key: str) -> Any | None:
        data = self.read_bytes(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise LakeDataError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def read_json_lines(self, key: str) -> Iterator[dict]:
        """The rows of a JSON-lines object (Flink's ``json`` format writes one object per line)."""
        data = self.read_bytes(key) or b""
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise LakeDataError(f"{self.uri(key)} line {number} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise LakeDataError(f"{self.uri(key)} line {number} is not a JSON object")
            yield row

    def read_parquet(self, key: str, columns: list[str]) -> list[dict]:
        import pyarrow.parquet as pq

        data = self.read_bytes(key)
        if data is None:
            return []
        try:
            table = pq.read_table(io.BytesIO(data), columns=columns)
        except Exception as exc:  # pyarrow raises ArrowInvalid, KeyError for a missing column, ...
            raise LakeDataError(f"{self.uri(key)} is not Parquet with columns {columns}: {exc}") from exc
        return table.to_pylist()

    def rows_in_window(
        self,
        day_prefix: Callable[[str], str],
        window: paths.HourWindow,
        budget: Budget,
        *,
        parquet_columns: list[str] | None = None,
    ) -> Iterator[tuple[LakeObject, dict]]:
        """Every row of the window's files (JSON lines, or Parquet when columns are given), within budget."""
        for obj in self.objects_in_window(day_prefix, window):
            if not budget.take(obj):
                continue
            if parquet_columns is not None:
                rows: Any = self.read_parquet(obj.key, parquet_columns)
            else:
                rows = self.read_json_lines(obj.key)
            for row in rows:
                yield obj, row

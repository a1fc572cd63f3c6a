"""The quarantine file of an hour: what a rejected record's line holds, and writing the file reproducibly.

Each line keeps the original record's text (UTF-8, or base64 when it is not valid UTF-8) with its reason code,
a detail naming the field and value, and where it came from (source key, line number), so a record can be
inspected and re-driven without going back to the raw objects.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from include.compaction.validation import FIREHOSE_PARTITIONING_FAILED, RecordValidator, Rejection, show

#: Cause recorded for Firehose error records whose payload passes validation (the event is not compacted).
CAUSE_VALID = "valid"
#: Cause recorded when a line of a Firehose error object is not an error record with base64 rawData.
CAUSE_UNREADABLE_ERROR_RECORD = "unreadable_error_record"


@dataclass(frozen=True)
class QuarantineFile:
    """A finished quarantine file: where it is, what it holds, and the checksum of its uncompressed lines."""

    path: Path
    records: int
    by_reason: dict[str, int]
    by_cause: dict[str, int]
    checksum: str


class QuarantineWriter:
    """Rejected records as gzip JSON lines, written deterministically (mtime 0) so reruns give equal bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = open(path, "wb")  # closed in close(), after the gzip trailer
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._file, mtime=0)
        self._sha = hashlib.sha256()
        self.count = 0
        self.by_reason: Counter[str] = Counter()
        self.by_cause: Counter[str] = Counter()

    def write(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")
        self._gz.write(data)
        self._sha.update(data)
        self.count += 1
        self.by_reason[record["reason"]] += 1
        if "cause" in record:
            self.by_cause[record["cause"]] += 1

    def close(self) -> QuarantineFile:
        """Finish the file (the gzip trailer) and describe it; counts by reason and cause are sorted by name."""
        self._gz.close()
        self._file.close()
        return QuarantineFile(
            path=self.path,
            records=self.count,
            by_reason=dict(sorted(self.by_reason.items())),
            by_cause=dict(sorted(self.by_cause.items())),
            checksum="sha256:" + self._sha.hexdigest(),
        )


def raw_fields(data: bytes) -> dict[str, str]:
    """The original bytes as ``raw`` text, base64 when they are not UTF-8 (``raw_encoding`` says which)."""
    try:
        return {"raw": data.decode("utf-8"), "raw_encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"raw": base64.b64encode(data).decode("ascii"), "raw_encoding": "base64"}


def rejected_record(rejection: Rejection, key: str, line_no: int, data: bytes) -> dict:
    """The quarantine line of a raw record the validator rejected."""
    return {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "source_key": key,
        "line": line_no,
        **raw_fields(data),
    }


def firehose_error_record(validator: RecordValidator, key: str, line_no: int, data: bytes) -> dict:
    """One Firehose error record -> its quarantine line, keeping the original record's text and the cause."""
    try:
        envelope = json.loads(data)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("rawData"), str):
            raise ValueError("no string field rawData")
        raw = base64.b64decode(envelope["rawData"], validate=True)
    except (ValueError, binascii.Error, RecursionError) as exc:
        return {
            "reason": FIREHOSE_PARTITIONING_FAILED,
            "cause": CAUSE_UNREADABLE_ERROR_RECORD,
            "detail": f"line is not a Firehose error record with base64 rawData ({exc}): {show(data)}",
            "source_key": key,
            "line": line_no,
            **raw_fields(data),
        }
    code, message = envelope.get("errorCode"), envelope.get("errorMessage")
    result = validator.validate(raw)
    if isinstance(result, Rejection):
        cause, why = result.reason, result.detail
    else:
        cause, why = CAUSE_VALID, "the record itself passes validation"
    return {
        "reason": FIREHOSE_PARTITIONING_FAILED,
        "cause": cause,
        "detail": f"Firehose could not partition the record ({code}: {message}); {why}",
        "source_key": key,
        "line": line_no,
        **raw_fields(raw),
        "error_code": code,
        "error_message": message,
        "arrival_timestamp": envelope.get("arrivalTimestamp"),
        "attempts_made": envelope.get("attemptsMade"),
    }

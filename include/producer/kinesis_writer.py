"""Write records to a Kinesis data stream with PutRecords: batched, rate-limited, retried, never lossy.

Limits are the documented per-call and per-shard ones: at most 500 records and 5 MiB per PutRecords call
(data plus partition key bytes, as AWS counts them), at most 1 MiB per record, and per shard 1,000 records/s
and 1 MiB/s. A client-side token bucket sized by shard count keeps the writer under the shard limits; entries
that fail anyway (throttling, internal errors) are retried with exponential backoff and full jitter.

Ordering: a batch is finished (all entries delivered, or the write fails) before the next batch is sent, so
a record never overtakes a record of an earlier batch. Inside one batch, a retried entry can land after a
later entry of the same partition key that succeeded at the first try; Kinesis offers no per-key ordering for
partially failed PutRecords calls, and the pipeline orders by client_timestamp anyway.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256
SHARD_RECORDS_PER_SECOND = 1000
SHARD_BYTES_PER_SECOND = 1024 * 1024

#: Whole-call errors worth another try (botocore has usually retried them a few times already).
RETRYABLE_CALL_ERRORS = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestLimitExceeded",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
#: Per-entry errors that another try cannot fix (the stream's KMS key or permissions are wrong).
PERMANENT_ENTRY_ERRORS = frozenset(
    {
        "KMSDisabledException",
        "KMSInvalidStateException",
        "KMSAccessDeniedException",
        "KMSNotFoundException",
        "KMSOptInRequired",
        "AccessDeniedException",
    }
)
_CONNECTION_ERRORS = (EndpointConnectionError, ConnectionClosedError, ReadTimeoutError, ConnectTimeoutError)


@dataclass(frozen=True)
class WriteReport:
    """What one :meth:`KinesisWriter.put` did; ``retried`` counts entry re-sends, ``calls`` API calls."""

    sent: int
    retried: int
    failed: int
    batches: int
    seconds: float
    calls: int = 0
    bytes: int = 0
    shards: int = 0
    throttle_wait_seconds: float = 0.0
    backoff_seconds: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProducerDeliveryError(RuntimeError):
    """Records could not be delivered; ``sent`` made it to the stream, ``failed`` did not."""

    def __init__(self, message: str, *, sent: int, failed: int, report: WriteReport | None = None) -> None:
        super().__init__(message)
        self.sent = sent
        self.failed = failed
        self.report = report


class RateLimiter:
    """Two token buckets (records and bytes per second) that block, via the injected sleep, until a call fits.

    Buckets start full and hold ``burst_seconds`` worth of tokens, so the long-run rate never exceeds the
    configured one while a single PutRecords call may use a full second's budget at once.
    """

    def __init__(
        self,
        records_per_second: float,
        bytes_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst_seconds: float = 1.0,
    ) -> None:
        if records_per_second <= 0 or bytes_per_second <= 0:
            raise ValueError(
                f"rate limits must be positive, got {records_per_second} records/s "
                f"and {bytes_per_second} bytes/s"
            )
        self.records_per_second = float(records_per_second)
        self.bytes_per_second = float(bytes_per_second)
        self.capacity_records = max(1.0, self.records_per_second * burst_seconds)
        self.capacity_bytes = max(float(MAX_RECORD_BYTES), self.bytes_per_second * burst_seconds)
        self._clock = clock
        self._sleep = sleep
        self._records = self.capacity_records
        self._bytes = self.capacity_bytes
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._records = min(self.capacity_records, self._records + elapsed * self.records_per_second)
        self._bytes = min(self.capacity_bytes, self._bytes + elapsed * self.bytes_per_second)

    def acquire(self, records: int, nbytes: int) -> float:
        """Take ``records`` and ``nbytes`` tokens, sleeping as needed; return the seconds waited."""
        if records > self.capacity_records or nbytes > self.capacity_bytes:
            raise ValueError(
                f"a call of {records} records / {nbytes} bytes exceeds the limiter's burst of "
                f"{self.capacity_records:.0f} records / {self.capacity_bytes:.0f} bytes"
            )
        waited = 0.0
        while True:
            self._refill()
            if self._records + 1e-9 >= records and self._bytes + 1e-6 >= nbytes:
                self._records -= records
                self._bytes -= nbytes
                return waited
            wait = max(
                (records - self._records) / self.records_per_second,
                (nbytes - self._bytes) / self.bytes_per_second,
                1e-6,
            )
            self._sleep(wait)
            waited += wait


def _entry(record: Any, index: int) -> tuple[bytes, str, int]:
    """(data, partition_key, size as AWS counts it) of a ProducedRecord-like object or a (data, key) pair."""
    if hasattr(record, "partition_key"):
        data, key = record.data, record.partition_key
    elif isinstance(record, tuple) and len(record) == 2:
        data, key = record
    else:
        raise TypeError(
            f"record {index}: expected a ProducedRecord or a (data, partition_key) pair, got {record!r}"
        )
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"record {index}: data must be bytes, got {type(data).__name__}")
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
        raise ValueError(
            f"record {index}: partition_key must be a string of 1 to {MAX_PARTITION_KEY_CHARS} characters, "
            f"got {key!r}"
        )
    size = len(data) + len(key.encode("utf-8"))
    if size > MAX_RECORD_BYTES:
        raise ValueError(
            f"record {index} (partition key {key!r}) is {size} bytes with its partition key, "
            f"more than the Kinesis limit of {MAX_RECORD_BYTES} bytes"
        )
    return data, key, size


def _error_code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if exc.response else 0
    return str(error.get("Code") or "Unknown"), int(status or 0)


class KinesisWriter:
    """Sends records to ``stream_name``; see the module docstring for limits, retries and ordering."""

    def __init__(
        self,
        client: Any,
        stream_name: str,
        *,
        shard_count: int | None = None,
        max_attempts: int = 8,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        utilization: float = 1.0,
    ) -> None:
        if not isinstance(stream_name, str) or not stream_name:
            raise ValueError(f"stream_name must be a non-empty string, got {stream_name!r}")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        if not 0 < utilization <= 1:
            raise ValueError(f"utilization must be in (0, 1], got {utilization!r}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError(
                f"backoff delays must be >= 0, got base_delay={base_delay} max_delay={max_delay}"
            )
        self.client = client
        self.stream_name = stream_name
        if shard_count is None:
            shard_count = self.discover_shard_count()
        if not isinstance(shard_count, int) or isinstance(shard_count, bool) or shard_count < 1:
            raise ValueError(f"shard_count must be an integer >= 1, got {shard_count!r}")
        self.shard_count = shard_count
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self.limiter = RateLimiter(
            shard_count * SHARD_RECORDS_PER_SECOND * utilization,
            shard_count * SHARD_BYTES_PER_SECOND * utilization,
            clock=clock,
            sleep=sleep,
        )
        # A call never needs more than one burst of the limiter, or it could never be admitted.
        self.max_batch_records = int(min(MAX_RECORDS_PER_CALL, self.limiter.capacity_records))
        self.max_batch_bytes = int(min(MAX_BYTES_PER_CALL, self.limiter.capacity_bytes))

    def discover_shard_count(self) -> int:
        """Open shards of the stream, from DescribeStreamSummary."""
        summary = self.client.describe_stream_summary(StreamName=self.stream_name)["StreamDescriptionSummary"]
        return int(summary["OpenShardCount"])

    def _batches(self, entries: list[tuple[bytes, str, int]]) -> Iterable[list[tuple[bytes, str, int]]]:
        batch: list[tuple[bytes, str, int]] = []
        size = 0
        for entry in entries:
            if batch and (len(batch) >= self.max_batch_records or size + entry[2] > self.max_batch_bytes):
                yield batch
                batch, size = [], 0
            batch.append(entry)
            size += entry[2]
        if batch:
            yield batch

    def put(self, records: Iterable[Any]) -> WriteReport:
        """Send every record or raise :class:`ProducerDeliveryError`; all are checked before any is sent."""
        entries = [_entry(r, i) for i, r in enumerate(records)]
        total = len(entries)
        began = self._clock()
        sent = retried = calls = batches = 0
        throttle_wait = backoff = 0.0
        codes: Counter[str] = Counter()

        def report() -> WriteReport:
            return WriteReport(
                sent=sent,
                retried=retried,
                failed=total - sent,
                batches=batches,
                seconds=self._clock() - began,
                calls=calls,
                bytes=sum(e[2] for e in entries),
                shards=self.shard_count,
                throttle_wait_seconds=throttle_wait,
                backoff_seconds=backoff,
                error_codes=dict(codes),
            )

        def fail(reason: str, cause: BaseException | None = None) -> ProducerDeliveryError:
            r = report()
            message = (
                f"PutRecords to stream {self.stream_name!r} failed: {reason}; {r.sent} of {total} records "
                f"were sent, {r.failed} were not delivered (error codes: {dict(codes) or 'none'})"
            )
            error = ProducerDeliveryError(message, sent=r.sent, failed=r.failed, report=r)
            error.__cause__ = cause
            return error

        for batch in self._batches(entries):
            batches += 1
            pending = batch
            attempt = 1
            while True:
                throttle_wait += self.limiter.acquire(len(pending), sum(e[2] for e in pending))
                calls += 1
                failed: list[tuple[bytes, str, int]] = []
                permanent: set[str] = set()
                try:
                    response = self.client.put_records(
                        StreamName=self.stream_name,
                        Records=[{"Data": data, "PartitionKey": key} for data, key, _ in pending],
                    )
                except ClientError as exc:
                    code, status = _error_code(exc)
                    codes[code] += len(pending)
                    if code not in RETRYABLE_CALL_ERRORS and status < 500:
                        raise fail(f"{code}: {exc}", exc) from exc
                    failed = pending
                except _CONNECTION_ERRORS as exc:
                    codes[type(exc).__name__] += len(pending)
                    failed = pending
                else:
                    results = response.get("Records", [])
                    if len(results) != len(pending):
                        raise fail(f"the response has {len(results)} results for {len(pending)} records")
                    for entry, result in zip(pending, results, strict=True):
                        code = result.get("ErrorCode")
                        if code:
                            failed.append(entry)
                            codes[code] += 1
                            if code in PERMANENT_ENTRY_ERRORS:
                                permanent.add(code)
                    sent += len(pending) - len(failed)
                if not failed:
                    break
                if permanent:
                    raise fail(f"permanent error(s) {', '.join(sorted(permanent))}")
                if attempt >= self.max_attempts:
                    raise fail(f"{len(failed)} records still failing after {attempt} attempts")
                delay = self._rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
                self._sleep(delay)
                backoff += delay
                retried += len(failed)
                pending = failed
                attempt += 1
        return report()

"""The producer task: generate an interval's records and write them to Kinesis, in bounded chunks."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from include.producer.generator import check_interval, generate
from include.producer.kinesis_writer import KinesisWriter, ProducerDeliveryError
from include.producer.params import MALFORMED_KINDS, ProducerParams
from include.producer.records import ms_to_datetime

#: Records generated and held in memory at once, at most (about; the rate is an average).
CHUNK_RECORDS = 500_000


def chunk_bounds(params: ProducerParams, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """Split [start, end) at multiples of a chunk length (at most an hour) so memory stays bounded.

    Splitting does not change what is sent: generation is split-invariant.
    """
    chunk_ms = int(min(3_600_000, max(1_000, CHUNK_RECORDS / params.events_per_second * 1000)))
    bounds = []
    lo = start_ms
    while lo < end_ms:
        hi = min(end_ms, (lo // chunk_ms + 1) * chunk_ms)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def produce_interval(
    client: Any,
    stream_name: str,
    params: ProducerParams | Mapping[str, Any] | None,
    start: datetime,
    end: datetime,
    *,
    writer: KinesisWriter | None = None,
) -> dict[str, Any]:
    """Send the records of [start, end) to ``stream_name`` and return a JSON-friendly report.

    Params and interval are validated before anything is generated or sent. On a delivery failure a
    :class:`ProducerDeliveryError` carries the counts over the whole interval so far.
    """
    params = ProducerParams.coerce(params)
    start_ms, end_ms = check_interval(start, end)
    writer = writer or KinesisWriter(client, stream_name)
    by_kind: Counter[str] = Counter()
    totals = Counter()
    errors: Counter[str] = Counter()
    generate_seconds = write_seconds = 0.0
    dropped_sessions = 0
    for lo, hi in chunk_bounds(params, start_ms, end_ms):
        t0 = time.perf_counter()
        batch = generate(params, ms_to_datetime(lo), ms_to_datetime(hi))
        t1 = time.perf_counter()
        generate_seconds += t1 - t0
        by_kind.update(batch.counts_by_kind())
        totals["valid_events"] += len(batch.valid_events())
        totals["bytes"] += batch.total_bytes()
        dropped_sessions += batch.dropped_sessions
        try:
            report = writer.put(batch.records)
        except ProducerDeliveryError as exc:
            sent = totals["sent"] + exc.sent
            raise ProducerDeliveryError(
                f"producing [{start.isoformat()}, {end.isoformat()}) to {stream_name!r} stopped in the chunk "
                f"[{ms_to_datetime(lo).isoformat()}, {ms_to_datetime(hi).isoformat()}): {exc}. "
                f"{sent} records of the interval were sent; {exc.failed} of this chunk were not, and records "
                f"after {ms_to_datetime(hi).isoformat()} were neither generated nor sent",
                sent=sent,
                failed=exc.failed,
                report=exc.report,
            ) from exc
        finally:
            write_seconds += time.perf_counter() - t1
        for name in ("sent", "retried", "failed", "batches", "calls"):
            totals[name] += getattr(report, name)
        totals["throttle_wait_seconds"] += report.throttle_wait_seconds
        errors.update(report.error_codes)
    records = sum(by_kind.values())
    return {
        "stream_name": stream_name,
        "start": ms_to_datetime(start_ms).isoformat(),
        "end": ms_to_datetime(end_ms).isoformat(),
        "params": params.to_dict(),
        "records": records,
        "by_kind": dict(sorted(by_kind.items())),
        "valid_events": totals["valid_events"],
        "late": by_kind.get("late", 0),
        "duplicates": by_kind.get("duplicate", 0),
        "resent": by_kind.get("resent", 0),
        "malformed": sum(by_kind.get(k, 0) for k in MALFORMED_KINDS),
        "bytes": totals["bytes"],
        "sent": totals["sent"],
        "retried": totals["retried"],
        "failed": totals["failed"],
        "batches": totals["batches"],
        "calls": totals["calls"],
        "shards": writer.shard_count,
        "throttle_wait_seconds": round(totals["throttle_wait_seconds"], 3),
        "error_codes": dict(errors),
        "dropped_sessions": dropped_sessions,
        "generate_seconds": round(generate_seconds, 3),
        "write_seconds": round(write_seconds, 3),
    }

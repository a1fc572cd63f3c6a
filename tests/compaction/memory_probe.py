"""Run one large compaction in a fresh process and report its peak memory as JSON on stdout.

Used by the memory test and the benchmark: ``python -m tests.compaction.memory_probe EVENTS [OBJECTS]``.
Events are written into moto's in-process S3 object by object from a template string (fast, bounded
memory); the kernel's peak-RSS counter is then reset (``/proc/self/clear_refs``) so ``compaction_peak_rss_mb``
is the process's peak during the compaction only (imports and the fake S3 included, generation excluded),
``phase_peak_rss_mb`` splits it by phase, and ``process_peak_rss_mb`` is the peak over the whole run.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import sys
import time
from datetime import UTC, datetime

TEMPLATE = (
    '{"event_id":"%08x-0000-4000-8000-%012x","user_id":%d,"device_id":"%s","client_event":"%s",'
    '"client_timestamp":"%s:%02d:%02d.%03dZ","countrycode":"%s"}\n'
)
DEVICES = ("computer", "mobile", "tablet")
EVENTS = ("login", "view_beer_list", "view_beer_details", "add_belgian_beer", "view_cart", "checkout")
COUNTRIES = ("DE", "IE", "CZ", "BE", "US", "GB", "FR")


def status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _instrument_phases(peaks: dict[str, int | None]) -> None:
    """Record the peak RSS of the read/validate phase and of the dedup/sort/write phase separately.

    The publish phase also holds the output inside moto's in-memory S3 (staging and final copies), memory a
    real S3 does not charge to the worker.
    """
    from include.compaction import dedup_sort

    real = dedup_sort.dedup_sort_write

    def measured(*args, **kwargs):
        peaks["read_validate"] = status_kb("VmHWM")
        reset_peak()
        try:
            return real(*args, **kwargs)
        finally:
            peaks["dedup_sort_write"] = status_kb("VmHWM")
            reset_peak()

    dedup_sort.dedup_sort_write = measured


def generate_object(hour: datetime, n_events: int, objects: int, index: int, duplicate_every: int) -> bytes:
    """Events index, index+objects, ... spread over the hour; every ``duplicate_every``-th is sent twice."""
    prefix = hour.strftime("%Y-%m-%dT%H")
    parts = []
    for i in range(index, n_events, objects):
        ms = (i * 3_600_000) // n_events
        rec = TEMPLATE % (
            i,
            i,
            1 + (i * 7919) % 200_000,
            DEVICES[i % 3],
            EVENTS[i % len(EVENTS)],
            prefix,
            ms // 60_000,
            ms // 1000 % 60,
            ms % 1000,
            COUNTRIES[i % len(COUNTRIES)],
        )
        parts.append(rec)
        if duplicate_every and i % duplicate_every == 0:
            parts.append(rec)
    return gzip.compress("".join(parts).encode(), compresslevel=1)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("events", type=int)
    parser.add_argument("objects", type=int, nargs="?", default=8)
    parser.add_argument("--duplicate-every", type=int, default=100)
    parser.add_argument("--memory-limit-mb", type=int, default=None, help="DuckDB memory limit in MB")
    args = parser.parse_args(argv)

    import boto3
    from moto import mock_aws

    from include.compaction import CompactionOptions, compact_hour
    from tests.compaction.helpers import BUCKET, SETTINGS, raw_key

    hour = datetime(2026, 11, 27, 10, tzinfo=UTC)
    now = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)
    options = CompactionOptions(
        **({"duckdb_memory_limit_mb": args.memory_limit_mb} if args.memory_limit_mb else {})
    )
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        t0 = time.perf_counter()
        for index in range(args.objects):
            body = generate_object(hour, args.events, args.objects, index, args.duplicate_every)
            s3.put_object(Bucket=BUCKET, Key=raw_key(hour, f"{index:02d}-00"), Body=body)
            del body
        generate_seconds = time.perf_counter() - t0
        baseline_kb = status_kb("VmRSS")
        generation_peak_kb = status_kb("VmHWM")
        phase_peaks_kb: dict[str, int | None] = {}
        reset = reset_peak()
        if reset:
            _instrument_phases(phase_peaks_kb)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        result = compact_hour(
            s3, BUCKET, hour, settings=SETTINGS, now=now, code_version="memory-probe", options=options
        )
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        if reset:
            phase_peaks_kb["upload_publish"] = status_kb("VmHWM")
        compaction_peak_kb = max(v or 0 for v in phase_peaks_kb.values()) if reset else None
    report = {
        "events": args.events,
        "objects": args.objects,
        "generate_seconds": round(generate_seconds, 2),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "baseline_rss_mb": round(baseline_kb / 1024, 1) if baseline_kb else None,
        "compaction_peak_rss_mb": round(compaction_peak_kb / 1024, 1) if compaction_peak_kb else None,
        # Resetting the counter also resets ru_maxrss, so the whole-run peak is assembled from the parts.
        "process_peak_rss_mb": round(
            max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                generation_peak_kb or 0,
                compaction_peak_kb or 0,
            )
            / 1024,
            1,
        ),
        "phase_peak_rss_mb": {k: round(v / 1024, 1) for k, v in phase_peaks_kb.items() if v},
        "result": result.to_dict(),
    }
    json.dump(report, sys.stdout)
    sys.stdout.write("\n")
    return report


if __name__ == "__main__":
    main()

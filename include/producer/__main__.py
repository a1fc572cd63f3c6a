"""Generate an interval offline and print its counts and the generation speed; optionally write the records.

    python -m include.producer --start 2026-11-27T10:00:00Z --end 2026-11-27T11:00:00Z \\
        --params '{"users": 10000, "events_per_second": 100}' [--out records.ndjson]

Nothing is sent anywhere: this is for looking at the data and measuring the generator.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime

from include.producer.generator import generate
from include.producer.params import ProducerParams


def _when(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no UTC offset; add Z or +00:00")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.producer", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=_when, required=True, help="interval start, ISO-8601 with offset")
    parser.add_argument("--end", type=_when, required=True, help="interval end (exclusive)")
    parser.add_argument("--params", default="{}", help="producer params as a JSON object")
    parser.add_argument("--out", help="write the records here, one per line (as Firehose concatenates them)")
    args = parser.parse_args(argv)
    try:
        params = ProducerParams.from_dict(json.loads(args.params))
    except (ValueError, TypeError) as exc:
        parser.error(f"--params: {exc}")
    wall, cpu = time.perf_counter(), time.process_time()
    batch = generate(params, args.start, args.end)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if args.out:
        with open(args.out, "wb") as fh:
            for record in batch.records:
                fh.write(record.data + b"\n")
    summary = {
        "records": len(batch),
        "by_kind": batch.counts_by_kind(),
        "bytes": batch.total_bytes(),
        "dropped_sessions": batch.dropped_sessions,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "records_per_cpu_second": round(len(batch) / cpu) if cpu else None,
    }
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of hourly compaction versus a plain DuckDB ``read_ndjson -> COPY TO parquet`` of the same data.

    uv run python bench/compaction_bench.py                  # 100k, 500k and 2M events, median of 3
    uv run python bench/compaction_bench.py --events 100000 --repeats 1
    uv run python bench/compaction_bench.py --baseline-repo /tmp/old-checkout   # before/after in one run

Each measurement runs in a fresh process so peak RSS is per run. Our compaction runs against moto's in-process
S3 (GetObject streaming through botocore, upload, staging -> publish and manifest included) with full
validation, quarantine, dedup, sort and checksum. The reference reads the *same* gzip objects from local files
with DuckDB and writes Parquet without validating, deduplicating or sorting: the near-limit cost of just
decoding and re-encoding the data. Events are synthetic valid records (1% sent twice) from
``tests/compaction/memory_probe.py``; "per core" divides by the CPU seconds the process used.

The measurements of one size are interleaved (ours, reference, ours, reference...) so a machine shared with
other work loads them alike, and the table ends with the ratios of issue 11 (target: compaction >= 0.5x the
1-thread reference): by wall time, and per core (CPU seconds). ``--baseline-repo`` also runs the compaction
of another checkout (e.g. ``git archive <commit> include tests bench | tar -x -C DIR``) in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import print_machine  # noqa: E402
from include.compaction.params import CompactionOptions  # noqa: E402
from tests.compaction.memory_probe import generate_object  # noqa: E402

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
REFERENCE_1 = "DuckDB read_ndjson->parquet, 1 thread"
REFERENCE_N = f"DuckDB read_ndjson->parquet, {os.cpu_count()} threads"


def _env(repo: Path = REPO) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    }


def write_objects(directory: Path, events: int, objects: int, duplicate_every: int) -> tuple[int, int]:
    """The benchmark's gzip objects as local files (byte-identical to what the probe puts into moto)."""
    import gzip

    gz_bytes = raw_bytes = 0
    for index in range(objects):
        body = generate_object(HOUR, events, objects, index, duplicate_every)
        (directory / f"part-{index:02d}.json.gz").write_bytes(body)
        gz_bytes += len(body)
        raw_bytes += len(gzip.decompress(body))
    return gz_bytes, raw_bytes


def run_ours(
    events: int, objects: int, duplicate_every: int, memory_limit_mb: int | None, repo: Path = REPO
) -> dict:
    cmd = [sys.executable, "-m", "tests.compaction.memory_probe", str(events), str(objects)]
    cmd.append(f"--duplicate-every={duplicate_every}")
    if memory_limit_mb:
        cmd.append(f"--memory-limit-mb={memory_limit_mb}")
    proc = subprocess.run(cmd, cwd=repo, env=_env(repo), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"compaction probe failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "seconds": report["seconds"],
        "cpu_seconds": report["cpu_seconds"],
        "peak_rss_mb": report["compaction_peak_rss_mb"] or report["process_peak_rss_mb"],
        "baseline_rss_mb": report["baseline_rss_mb"],
        "rows": report["result"]["written_rows"],
        "stages": report["result"]["stages"],
    }


def duckdb_worker(directory: str, out: str, threads: int) -> None:
    """Child process: the plain DuckDB read + COPY, reporting wall, CPU and peak RSS."""
    import duckdb

    con = duckdb.connect(config={"threads": threads})
    columns = (
        "{event_id: 'VARCHAR', user_id: 'INTEGER', device_id: 'VARCHAR', client_event: 'VARCHAR', "
        "client_timestamp: 'VARCHAR', countrycode: 'VARCHAR'}"
    )
    cpu0, t0 = time.process_time(), time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM read_ndjson('{directory}/*.json.gz', columns={columns}, compression='gzip')) "
        f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
    )
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchall()[0][0]
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "rows": rows,
            }
        )
    )


def run_duckdb(directory: Path, threads: int) -> dict:
    out = directory / "reference.parquet"
    cmd = [sys.executable, __file__, "--duckdb-worker", str(directory), str(out), str(threads)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"duckdb reference failed:\n{proc.stderr[-3000:]}")
    out.unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 500_000, 2_000_000])
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duplicate-every", type=int, default=100)
    parser.add_argument(
        "--memory-limit-mb",
        type=int,
        default=None,
        help=f"DuckDB memory limit of the compaction in MB (default {CompactionOptions().duckdb_memory_limit_mb})",
    )
    parser.add_argument(
        "--baseline-repo",
        type=Path,
        default=None,
        help="another checkout whose compaction runs in the same rounds (before/after comparisons)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results and ratios here")
    parser.add_argument("--duckdb-worker", nargs=3, metavar=("DIR", "OUT", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.duckdb_worker:
        directory, out, threads = args.duckdb_worker
        duckdb_worker(directory, out, int(threads))
        return

    load_start = os.getloadavg()
    results = []
    for events in args.events:
        with tempfile.TemporaryDirectory(prefix="compaction-bench-") as tmp:
            directory = Path(tmp)
            gz_bytes, raw_bytes = write_objects(directory, events, args.objects, args.duplicate_every)
            measured: dict[str, list[dict]] = {}
            probe_args = (events, args.objects, args.duplicate_every, args.memory_limit_mb)
            runners = {"compact_hour (moto S3)": partial(run_ours, *probe_args)}
            if args.baseline_repo:
                name = f"compact_hour of {args.baseline_repo} (moto S3)"
                runners[name] = partial(run_ours, *probe_args, repo=args.baseline_repo.resolve())
            runners[REFERENCE_1] = partial(run_duckdb, directory, threads=1)
            runners[REFERENCE_N] = partial(run_duckdb, directory, threads=os.cpu_count() or 1)
            for _ in range(args.repeats):
                for name, runner in runners.items():
                    measured.setdefault(name, []).append(runner())
            lines = events + len(range(0, events, args.duplicate_every)) if args.duplicate_every else events
            for name, runs in measured.items():
                seconds, cpu = median_of(runs, "seconds"), median_of(runs, "cpu_seconds")
                results.append(
                    {
                        "events": events,
                        "lines": lines,
                        "what": name,
                        "gz_mb": gz_bytes / 1e6,
                        "raw_mb": raw_bytes / 1e6,
                        "seconds": seconds,
                        "cpu_seconds": cpu,
                        "peak_rss_mb": median_of(runs, "peak_rss_mb"),
                        "rows_out": runs[0]["rows"],
                        "stages": runs[len(runs) // 2].get("stages"),
                    }
                )
                print(f"# done: {events} {name}: {seconds:.2f}s", file=sys.stderr)

    import pyarrow

    print_machine()
    print(
        f"pyarrow {pyarrow.__version__}; load average (1/5/15 min) at start {_load(load_start)}, at end "
        f"{_load(os.getloadavg())}. Median of {args.repeats} run(s); {args.objects} gzip objects per hour."
    )
    print()
    print(
        "| events/hour | lines | what | gz MB | raw MB | wall s | raw MB/s | events/s | CPU s "
        "| raw MB per CPU-s | events/s per core | peak RSS MB |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cpu = max(r["cpu_seconds"], 1e-9)
        print(
            f"| {r['events']:,} | {r['lines']:,} | {r['what']} | {r['gz_mb']:.1f} | {r['raw_mb']:.1f} "
            f"| {r['seconds']:.2f} | {r['raw_mb'] / r['seconds']:.1f} | {r['lines'] / r['seconds']:,.0f} "
            f"| {r['cpu_seconds']:.2f} | {r['raw_mb'] / cpu:.1f} | {r['lines'] / cpu:,.0f} "
            f"| {r['peak_rss_mb']:.0f} |"
        )
    print()
    print("Ratios (throughput of the compaction / throughput of the reference, same objects, same rounds):")
    print()
    print("| events/hour | compaction | vs | by wall time | per core (CPU s) |")
    print("|---:|---|---|---:|---:|")
    ratios: dict[str, float] = {}
    for events in args.events:
        rows = {r["what"]: r for r in results if r["events"] == events}
        for name, ours in rows.items():
            if not name.startswith("compact_hour"):
                continue
            for reference in (REFERENCE_1, REFERENCE_N):
                ref = rows[reference]
                if (
                    name == "compact_hour (moto S3)"
                    and reference == REFERENCE_1
                    and events == max(args.events)
                ):
                    ratios["ours_vs_duckdb"] = round(ref["seconds"] / ours["seconds"], 2)
                    ratios["ours_vs_duckdb_per_core"] = round(
                        ref["cpu_seconds"] / max(ours["cpu_seconds"], 1e-9), 2
                    )
                print(
                    f"| {events:,} | {name} | {reference} | {ref['seconds'] / ours['seconds']:.2f}x "
                    f"| {ref['cpu_seconds'] / max(ours['cpu_seconds'], 1e-9):.2f}x |"
                )
    print()
    for r in results:
        if r["stages"]:
            print(f"- {r['events']:,} events, compact_hour stages (s): {r['stages']}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, **ratios}, indent=2, default=str))


if __name__ == "__main__":
    main()

"""Where the batch sessions of an hour spend their time (issue 11, target 2): DuckDB's own operator timings.

Builds the hour's sessions from compacted Parquet (``include.reconciliation.hour_sessions.build``, the DAG's code)
and DuckDB's bare window on the same file (``bench.duckdb_bench.bare_window``), with DuckDB's JSON profiler on,
and sums each query plan's operator times (seconds summed over threads, as DuckDB reports them) into the parts
of the work: what the bare window also does (read, sort, lag) and what only ours does (reject rules, dedup, the
first/last events, session ids and ISO strings, the tables the reconciliation reads). The Parquet file is laid
out as the compaction writes it (sorted by key and time, ``CompactionParams.row_group_rows`` rows per group).

    python -m bench.hour_sessions_profile                  # 1 M sessions (about 3 M events)
    python -m bench.hour_sessions_profile --sessions 200000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import median, print_machine  # noqa: E402

_DEDUP = "dedup: valid events kept once, repeated ids, their copies"

#: (part, operator type, a text its plan details must contain); the first match names the operator.
PARTS = (
    ("read Parquet", "TABLE_SCAN", "READ_PARQUET"),
    ("read Parquet", "READ_PARQUET", ""),
    (
        "lower(event_id), casts, epoch ms",
        "PROJECTION",
        '["event_id", "user_id", "device_id", "client_event", "countrycode", "event_ms"]',
    ),
    ("scan the built tables", "TABLE_SCAN", ""),
    ("reject rules", "FILTER", "control character"),
    (_DEDUP, "CTE", ""),
    (_DEDUP, "CTE_SCAN", ""),
    (_DEDUP, "HASH_JOIN", "id_key"),
    (_DEDUP, "HASH_GROUP_BY", "count_star()"),
    (_DEDUP, "WINDOW", "lag(id_key"),
    (_DEDUP, "WINDOW", "row_number() OVER (PARTITION BY event_id"),
    (_DEDUP, "DELETE", ""),
    ("gaps: sort by key and time, lag/lead", "WINDOW", "lag("),
    ("pair each session's first and last event", "FILTER", "60000"),
    ("pair each session's first and last event", "WINDOW", "ORDER BY event_no"),
    ("session rows: md5 id, ISO strings", "PROJECTION", '"session_id"'),
    ("running sum (bare only)", "WINDOW", "sum("),
    ("count distinct (bare only)", "HASH_GROUP_BY", ""),
    ("write the tables", "CREATE_TABLE_AS", ""),
    ("write the tables", "BATCH_CREATE_TABLE_AS", ""),
)


def _operators(node: dict):
    yield node
    for child in node.get("children", []):
        yield from _operators(child)


def part_of(operator: dict, bare: bool) -> str:
    """The part an operator of the plan belongs to."""
    kind, details = operator.get("type", ""), json.dumps(operator.get("extra_info", {}))
    for part, part_kind, text in PARTS:
        if part.endswith("(bare only)") and not bare:
            continue
        if kind == part_kind and text in details:
            return part
    return "other (projections, filters, casts)"


def profiled(con: duckdb.DuckDBPyConnection, run, bare: bool, out: Path) -> dict[str, float]:
    """Run ``run()`` (one or more queries) with the profiler on; CPU seconds per part over every query."""
    parts: dict[str, float] = defaultdict(float)
    queries: list[dict] = []
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = '{out}'")
    original = con.execute

    def execute(sql, *args):  # every statement's profile is written to `out`; keep the ones with a plan
        out.unlink(missing_ok=True)
        result = original(sql, *args)
        if out.exists():
            profile = json.loads(out.read_text())
            if profile.get("operator"):
                queries.append(profile)
        return result

    run(execute)
    con.execute("PRAGMA disable_profiling")
    for profile in queries:
        for root in profile["operator"]:
            for operator in _operators(root):
                parts[part_of(operator, bare)] += operator.get("timing", 0.0)
    return dict(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    from bench.duckdb_bench import bare_window, bare_window_sql, cpu_s
    from bench.reconciliation_bench import HOUR, synthetic_hour
    from include.compaction.params import CompactionParams
    from include.reconciliation import ReconcileOptions
    from include.reconciliation import hour_sessions as hs
    from include.reconciliation.inputs import EVENTS_SCHEMA, register
    from include.reconciliation.options import HourWindow
    from include.sessions.contract import SessionContract

    print_machine()
    load_start = os.getloadavg()[0]
    options = ReconcileOptions(now=HOUR.replace(day=28))
    window = HourWindow.of(HOUR, options)
    gap_ms = SessionContract().gap_ms
    with tempfile.TemporaryDirectory(prefix="hour-profile-") as tmp:
        events, _ = synthetic_hour(args.sessions, args.seed)
        parquet = Path(tmp) / "part-00000.parquet"
        pq.write_table(events, parquet, compression="zstd", row_group_size=CompactionParams().row_group_rows)

        def build(con: duckdb.DuckDBPyConnection) -> hs.BatchSessions:
            view = register(con, "batch_events_in", [parquet], EVENTS_SCHEMA, "parquet")
            return hs.build(con, view, window, options)

        timings: dict[str, list[tuple[float, float]]] = {"ours": [], "bare": []}
        for _ in range(args.repeats):  # interleaved, each in a fresh connection
            con = duckdb.connect()
            t0, c0 = time.perf_counter(), cpu_s()
            built = build(con)
            timings["ours"].append((time.perf_counter() - t0, cpu_s() - c0))
            con.close()
            t0, c0 = time.perf_counter(), cpu_s()
            bare_window(parquet, gap_ms)
            timings["bare"].append((time.perf_counter() - t0, cpu_s() - c0))
        con = duckdb.connect()
        ours = profiled(con, lambda execute: _build_with(con, execute, build), False, Path(tmp) / "ours.json")
        con.close()
        con = duckdb.connect()
        bare_sql = bare_window_sql(parquet, gap_ms)
        # a table, so the query has finished (and written its profile) when execute returns
        bare = profiled(
            con,
            lambda execute: execute(f"CREATE TEMP TABLE bare AS {bare_sql}"),
            True,
            Path(tmp) / "bare.json",
        )
        con.close()
    wall = {name: median([w for w, _ in runs]) for name, runs in timings.items()}
    cpu = {name: median([c for _, c in runs]) for name, runs in timings.items()}
    print(
        f"\n{built.window_events} events, {built.settled + built.deferred} sessions in the hour; "
        f"load {load_start:.2f} -> {os.getloadavg()[0]:.2f}\n"
    )
    print("| | ours (hour_sessions.build) | bare window |\n|---|---:|---:|")
    print(f"| wall s (median of {args.repeats}) | {wall['ours']:.2f} | {wall['bare']:.2f} |")
    print(f"| process CPU-s | {cpu['ours']:.2f} | {cpu['bare']:.2f} |")
    print(
        f"| events/s | {built.window_events / wall['ours'] / 1e6:.2f} M | "
        f"{events.num_rows / wall['bare'] / 1e6:.2f} M |"
    )
    print(f"| ratio (bare wall / ours) | {wall['bare'] / wall['ours']:.2f} | |")
    print("\nDuckDB's operator timings by part, seconds summed over threads (one profiled run each):\n")
    print("| part | ours | bare |\n|---|---:|---:|")
    for part in sorted(set(ours) | set(bare), key=lambda p: -max(ours.get(p, 0), bare.get(p, 0))):
        print(f"| {part} | {ours.get(part, 0):.2f} | {bare.get(part, 0):.2f} |")
    print(f"| **all operators** | {sum(ours.values()):.2f} | {sum(bare.values()):.2f} |")
    return 0


def _build_with(con: duckdb.DuckDBPyConnection, execute, build):
    """Run ``build`` with the connection's execute replaced by the profiling one."""

    class Profiled:
        def __getattr__(self, name):
            return execute if name == "execute" else getattr(con, name)

    return build(Profiled())


if __name__ == "__main__":
    sys.exit(main())

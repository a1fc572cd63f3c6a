"""Benchmark of the DuckDB paths of issue 11, target 2, with its baselines measured in the same run:

1. ``clickstream sessionize --engine duckdb`` on a JSON-lines file (time-ordered events of 20k users over an hour)
   against a naive pandas groupby on the same file, both in this process: the command (file in, sessions file
   out; the ratio), the same command as a process of its own (interpreter and imports included, shown beside)
   and the function ``localdev.cli.sessionize`` (a Python dict per session, what the tests compare). The pandas
   version reads with ``pd.read_json(lines=True)``,
   checks types, non-empty strings, the user_id range and the timestamp format (vectorized), drops copies of an
   event_id, sorts and numbers sessions with ``groupby().diff()``/``cumsum``. It skips what the engine does on top:
   the error naming the first bad line, unknown/missing members, control characters, the future-skew rule, the
   ``client_event`` length and the exact first/last tie-break (it sorts by the same key, so results agree here).
   Both give the same number of sessions (checked).
2. Batch sessions of an hour from compacted Parquet (``include.reconciliation.hour_sessions.build``: reject rules,
   dedup, sessions, settled/deferred marks) in events/s against DuckDB's bare ``read_parquet`` with a plain
   lag + running-sum window (the sessionizing alone, no rules, dedup or session rows) on the same file, written
   as the compaction writes it (sorted by key and time, ``CompactionParams.row_group_rows`` rows per group).
   ``bench.hour_sessions_profile`` shows where the hour's time goes.

    python -m bench.duckdb_bench                          # 1 M JSON events, 1 M-session hour (about 3 M events)
    python -m bench.duckdb_bench --events 200000 --sessions 200000 --repeats 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import median, print_machine  # noqa: E402
from include.events_schema import CLIENT_EVENTS, DEVICE_IDS  # noqa: E402
from include.sessions.contract import SessionContract, iso_ms  # noqa: E402

T0 = 1_780_000_000_000  # 2026-05-28T20:26:40Z


def write_events(path: Path, events: int, users: int, seed: int) -> None:
    """Time-ordered events of ``users`` users over one hour, one JSON object per line (the producer's shape)."""
    rnd = np.random.default_rng(seed)
    ts = T0 + np.sort(rnd.integers(0, 3_600_000, events))
    user = rnd.integers(1, users + 1, events)
    device = np.array(DEVICE_IDS)[user % len(DEVICE_IDS)]
    event = np.array(CLIENT_EVENTS)[rnd.integers(0, len(CLIENT_EVENTS), events)]
    country = np.array(["DE", "IE", "CZ", "BE"])[rnd.integers(0, 4, events)]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(events):
            out.write(
                f'{{"event_id": "00000000-0000-4000-8000-{i:012d}", "user_id": {user[i]}, '
                f'"device_id": "{device[i]}", "client_event": "{event[i]}", '
                f'"client_timestamp": "{iso_ms(int(ts[i]))}", "countrycode": "{country[i]}"}}\n'
            )


def naive_pandas_sessions(path: Path, gap_ms: int) -> int:
    """Sessions of the file the obvious pandas way (see the module doc for what it skips); returns the count."""
    import pandas as pd

    df = pd.read_json(path, lines=True, dtype=False)
    ts = pd.to_datetime(df["client_timestamp"], format="%Y-%m-%dT%H:%M:%S.%fZ", utc=True, errors="coerce")
    ok = ts.notna() & df["user_id"].between(1, 2**31 - 1)
    for name in ("event_id", "device_id", "client_event", "countrycode"):
        ok &= df[name].map(lambda v: isinstance(v, str) and v != "")
    df = df[ok].assign(event_ms=ts[ok].astype("int64") // 10**6).drop_duplicates("event_id")
    df = df.sort_values(["user_id", "device_id", "event_ms", "client_event", "event_id"])
    first = ~df.duplicated(["user_id", "device_id"])
    new = first | df.groupby(["user_id", "device_id"])["event_ms"].diff().gt(gap_ms)
    df["session_no"] = new.cumsum()
    sessions = df.groupby("session_no").agg(
        user_id=("user_id", "first"),
        device_id=("device_id", "first"),
        start=("event_ms", "min"),
        last=("event_ms", "max"),
        event_count=("event_id", "count"),
        first_event=("client_event", "first"),
        last_event=("client_event", "last"),
        countrycode=("countrycode", "first"),
    )
    return len(sessions)


def bare_window_sql(path: Path, gap_ms: int) -> str:
    """DuckDB's own speed: read_parquet and a lag + running-sum window, nothing else."""
    return f"""
        SELECT count(DISTINCT (user_id, device_id, session_no)) FROM (
            SELECT *, sum(starts) OVER (PARTITION BY user_id, device_id ORDER BY ms ROWS UNBOUNDED PRECEDING)
                AS session_no
            FROM (
                SELECT user_id, device_id, ms,
                    CASE WHEN ms - lag(ms) OVER (PARTITION BY user_id, device_id ORDER BY ms) <= {gap_ms}
                        THEN 0 ELSE 1 END AS starts
                FROM (SELECT user_id, device_id, epoch_ms(client_timestamp) AS ms FROM read_parquet('{path}'))
            )
        )
        """


def bare_window(path: Path, gap_ms: int) -> int:
    """The number of sessions :func:`bare_window_sql` finds, in a fresh connection."""
    con = duckdb.connect()
    try:
        (n,) = con.execute(bare_window_sql(path, gap_ms)).fetchone()
        return n
    finally:
        con.close()


def cpu_s() -> float:
    """CPU seconds of this process (all threads): steadier than wall time on a shared, loaded machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn, repeats: int, cpu: list[float] | None = None):
    """Median wall seconds and the last result; CPU seconds of each run appended to ``cpu``."""
    runs, result = [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), cpu_s()
        result = fn()
        runs.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(cpu_s() - c0)
    return median(runs), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="JSON-lines events for sessionize")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=1_000_000, help="sessions of the Parquet hour")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    from bench.reconciliation_bench import HOUR, synthetic_hour
    from include.compaction.params import CompactionParams
    from include.reconciliation import ReconcileOptions
    from include.reconciliation import hour_sessions as hs
    from include.reconciliation.inputs import EVENTS_SCHEMA, register
    from include.reconciliation.options import HourWindow
    from localdev import cli

    print_machine()
    contract = SessionContract()
    results: dict[str, object] = {"load_avg_start": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="duckdb-bench-") as tmp:
        jsonl = Path(tmp) / "events.jsonl"
        write_events(jsonl, args.events, args.users, args.seed)
        os.sync()  # the input's write-back is the setup's, not the command's (it existed before the command ran)
        results["json_events"] = args.events
        results["json_mb"] = round(jsonl.stat().st_size / 1e6, 1)
        warm = Path(tmp) / "warm.jsonl"  # imports and first-query costs out of the measurement
        warm.write_text("".join(jsonl.open().readline() for _ in range(1)))
        cli.sessionize("duckdb", warm, contract)
        out = Path(tmp) / "sessions.jsonl"
        command = ["sessionize", "--engine", "duckdb", "--input", str(jsonl), "--output", str(out)]
        # the command (JSON lines in, JSON lines out), then the function (Python rows): not interleaved, because
        # a command run right after the function was 0.2 s slower (its 438k dicts had just been freed; a
        # command runs in a process of its own)
        cmd_runs, cmd_cpu, fn_runs, rows = [], [], [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), cpu_s()
            assert cli.main(command) == 0
            cmd_runs.append(time.perf_counter() - t0)
            cmd_cpu.append(cpu_s() - c0)
        for _ in range(args.repeats):
            rows = []
            gc.collect()
            t0 = time.perf_counter()
            rows = cli.sessionize("duckdb", jsonl, contract)
            fn_runs.append(time.perf_counter() - t0)
        # the same command as a process of its own: interpreter, imports and a cold heap included
        process_runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "localdev.cli", *command], check=True, capture_output=True, cwd=REPO
            )
            process_runs.append(time.perf_counter() - t0)
        results["sessionize_process_s"] = round(median(process_runs), 2)
        cmd_s, duck_s = median(cmd_runs), median(fn_runs)
        assert sum(1 for _ in out.open(encoding="utf-8")) == len(rows)
        results["sessionize_command_s"] = round(cmd_s, 2)
        results["sessionize_command_events_per_s"] = round(args.events / cmd_s)
        results["sessionize_rows_s"] = round(duck_s, 2)
        results["sessions"] = len(rows)
        if not args.skip_pandas:
            pandas_cpu: list[float] = []
            pandas_s, count = timed(lambda: naive_pandas_sessions(jsonl, contract.gap_ms), 1, pandas_cpu)
            results["command_cpu_s"] = round(median(cmd_cpu), 2)
            results["pandas_cpu_s"] = round(pandas_cpu[0], 2)
            results["command_vs_pandas_cpu"] = round(pandas_cpu[0] / median(cmd_cpu), 1)
            assert count == len(rows), ("pandas", count, len(rows))
            results["pandas_groupby_s"] = round(pandas_s, 2)
            results["duckdb_vs_pandas"] = round(pandas_s / cmd_s, 1)  # the command (bench/ratios.py reads it)
            results["rows_vs_pandas"] = round(pandas_s / duck_s, 1)

        events, _ = synthetic_hour(args.sessions, args.seed)
        parquet = Path(tmp) / "part-00000.parquet"
        # laid out as the compaction writes it: sorted by key and time, its row groups
        pq.write_table(events, parquet, compression="zstd", row_group_size=CompactionParams().row_group_rows)
        options = ReconcileOptions(now=HOUR.replace(day=28))
        window = HourWindow.of(HOUR, options)

        def build():
            con = duckdb.connect()
            try:
                view = register(con, "batch_events_in", [parquet], EVENTS_SCHEMA, "parquet")
                return hs.build(con, view, window, options)
            finally:
                con.close()

        hour_cpu: list[float] = []
        bare_cpu: list[float] = []
        hour_s, built = timed(build, args.repeats, hour_cpu)
        bare_s, _ = timed(lambda: bare_window(parquet, contract.gap_ms), args.repeats, bare_cpu)
        results["hour_sessions_cpu_s"] = round(median(hour_cpu), 2)
        results["bare_window_cpu_s"] = round(median(bare_cpu), 2)
        results["hour_vs_bare_cpu"] = round(median(bare_cpu) / median(hour_cpu), 2)
        results["hour_events"] = built.window_events
        results["hour_sessions_s"] = round(hour_s, 2)
        results["hour_events_per_s"] = round(built.window_events / hour_s)
        results["bare_window_s"] = round(bare_s, 2)
        results["bare_window_events_per_s"] = round(events.num_rows / bare_s)
        results["hour_vs_bare"] = round(bare_s / hour_s, 2)
    results["load_avg_end"] = round(os.getloadavg()[0], 2)
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

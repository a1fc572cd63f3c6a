"""Sessionizing throughput: the Flink SQL job (local runner, bounded) and the DuckDB batch SQL on the same events.

``python -m bench.flink_bench [--events 1000000] [--json results.json]``

Flink's fixed cost (process + JVM start, planning, MiniCluster start/stop) is measured with a 100-event run and
reported apart from the steady state: throughput = (events difference) / (job time difference). The input is a
synthetic day of visits: bursts of events per (user, device), gaps mostly under the 60 s session gap, in time
order with arrival jitter under the watermark delay (so nothing is late and both engines must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import print_machine
from include.events_schema import CLIENT_EVENTS, DEVICE_IDS
from include.sessions import batch
from include.sessions.contract import SessionContract, iso_ms
from localdev import flink_runner
from localdev.event_files import read_events_file

START_MS = 1_735_725_600_000  # 2025-01-01T10:00:00.000Z
COUNTRIES = ("DE", "FR", "IE", "CZ", "BE", "NL", "AT", "PL")


def generate(path: Path, events: int, users: int, seed: int) -> None:
    """Write ``events`` JSON lines: visits of 1-40 events, 0.2-70 s apart, over about 12 hours."""
    rnd = random.Random(seed)
    rows: list[tuple[float, int, str]] = []
    span_ms = 12 * 3_600_000
    i = 0
    while i < events:
        user = rnd.randint(1, users)
        device = DEVICE_IDS[user % len(DEVICE_IDS)] if rnd.random() < 0.8 else rnd.choice(DEVICE_IDS)
        country = COUNTRIES[user % len(COUNTRIES)]
        ts = START_MS + rnd.randrange(span_ms)
        for _ in range(min(rnd.randint(1, 40), events - i)):
            record = {
                "event_id": f"ev-{seed}-{i}",
                "user_id": user,
                "device_id": device,
                "client_event": rnd.choice(CLIENT_EVENTS),
                "client_timestamp": iso_ms(ts),
                "countrycode": country,
            }
            arrival = ts + rnd.random() * 2_000  # arrival jitter stays under the 5 s watermark delay
            rows.append((arrival, i, json.dumps(record)))
            i += 1
            ts += int(rnd.expovariate(1 / 15_000)) + 200
    rows.sort()
    with open(path, "w", encoding="utf-8") as handle:
        for _, _, text in rows:
            handle.write(text + "\n")


def bench_flink(path: Path, tiny: Path, contract: SessionContract, work: Path) -> dict:
    def run(source: Path, name: str) -> tuple[flink_runner.BoundedRun, dict]:
        result = flink_runner.run_bounded(source, contract, work_dir=work / name, timeout_s=3600)
        t = result.status.timings
        phases = {
            "total_s": round(result.seconds, 2),
            "jvm_start_s": round(t["env_ready"] - t["process_start"], 2),
            "plan_and_submit_s": round(t["submitted"] - t["env_ready"], 2),
            "job_s": round(t["ended"] - t["submitted"], 2),
        }
        return result, phases

    tiny_run, tiny_phases = run(tiny, "tiny")
    big_run, big_phases = run(path, "big")
    events = sum(1 for _ in open(path)) - sum(1 for _ in open(tiny))
    steady = big_phases["job_s"] - tiny_phases["job_s"]
    return {
        "startup_run_100_events": tiny_phases,
        "run": big_phases,
        "steady_state_events_per_s": round(events / steady) if steady > 0 else None,
        "sessions": len(big_run.sessions),
        "late": len(big_run.late_events),
        "rejected": len(big_run.rejected_events),
        "_sessions": big_run.sessions,
    }


def bench_duckdb(path: Path, contract: SessionContract) -> dict:
    started = time.monotonic()
    checked = read_events_file(path, contract)
    checked_s = time.monotonic() - started
    con = batch.connect()
    started = time.monotonic()
    batch.register_raw_records(con, checked.records)
    sessions = batch.sessions(con, contract)
    sql_s = time.monotonic() - started
    return {
        "python_input_checks_s": round(checked_s, 2),
        "sessions_sql_s": round(sql_s, 2),
        "events_per_s": round(len(checked.records) / sql_s),
        "sessions": len(sessions),
        "_sessions": sessions,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-flink", action="store_true")
    args = parser.parse_args(argv)
    print_machine()
    load_start = os.getloadavg()
    contract = SessionContract()
    with tempfile.TemporaryDirectory(prefix="flink-bench-") as tmp:
        work = Path(tmp)
        source, tiny = work / "events.jsonl", work / "tiny.jsonl"
        started = time.monotonic()
        generate(source, args.events, args.users, args.seed)
        generate(tiny, 100, 10, args.seed)
        results: dict = {
            "events": args.events,
            "users": args.users,
            "input_mb": round(source.stat().st_size / 1e6, 1),
            "generate_s": round(time.monotonic() - started, 2),
        }
        results["duckdb"] = bench_duckdb(source, contract)
        if not args.skip_flink:
            results["flink"] = bench_flink(source, tiny, contract, work)
            flink_sessions = sorted(
                results["flink"]["_sessions"],
                key=lambda r: (r["user_id"], r["device_id"], r["session_start"]),
            )
            results["engines_agree"] = flink_sessions == results["duckdb"]["_sessions"]
    for engine in ("duckdb", "flink"):
        results.get(engine, {}).pop("_sessions", None)
    results["load_avg_start_end"] = [round(v, 2) for v in (*load_start, *os.getloadavg())]
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if results.get("engines_agree", True) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the hourly reconciliation: batch sessions of an hour from Parquet (events/s) and the
classification of an hour with 1 million sessions (target <= 5 s on 2 cores), against a naive pandas
implementation of the same classification measured in the same run.

    python -m bench.reconciliation_bench                       # 1M sessions
    python -m bench.reconciliation_bench --sessions 100000 --repeats 1

Synthetic hour (numpy, seeded): each session has its own (user_id, device_id), 1 + geometric(1/3) events
(capped at 20) 0.5-59 s apart, starting uniformly in the hour, so sessions cross into the next hour. The stream
side is the batch with faults: 1 % of the multi-event sessions lost one event to the late ledger, 0.05 % are
missing in the stream, 0.05 % count one event more (mismatch), 0.05 % of stream sessions have no batch events.
Both implementations must give the same counts per cause (checked).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.machine import median, print_machine  # noqa: E402
from include.reconciliation import HourInputs, ReconcileOptions, reconcile_hour  # noqa: E402
from include.reconciliation.inputs import EVENTS_SCHEMA, LATE_SCHEMA, STREAM_SESSION_SCHEMA  # noqa: E402
from include.reconciliation.options import HourWindow  # noqa: E402
from include.sessions.contract import iso_ms  # noqa: E402

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
H_MS = int(HOUR.timestamp() * 1000)
GAP = 60_000
DEVICES = np.array(["computer", "mobile", "tablet"])


def synthetic_hour(sessions: int, seed: int) -> tuple[pa.Table, dict]:
    """Events of ``sessions`` sessions, sorted like the compacted Parquet, plus per-event session numbers."""
    rnd = np.random.default_rng(seed)
    sizes = np.minimum(1 + rnd.geometric(1 / 3, sessions) - 1, 20)
    starts = H_MS + rnd.integers(0, 3_600_000, sessions)
    session_of = np.repeat(np.arange(sessions), sizes)
    gaps = rnd.integers(500, 59_000, session_of.size)
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    gaps[first] = 0
    offsets = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], sizes)
    ts = starts[session_of] + offsets
    keys = rnd.permutation(sessions * 3 // 2 + 10)[:sessions]
    user = (keys // 3 + 1).astype(np.int32)
    device = DEVICES[keys % 3]
    n = session_of.size
    ids = np.char.add("00000000-0000-4000-8000-", np.char.zfill(np.arange(n).astype(str), 12))
    events = pa.table(
        {
            "event_id": ids,
            "user_id": user[session_of],
            "device_id": device[session_of],
            "client_event": np.array(["login", "view_beer_list", "checkout"])[rnd.integers(0, 3, n)],
            "client_timestamp": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "countrycode": np.array(["DE", "IE", "CZ"])[rnd.integers(0, 3, n)],
        },
        schema=EVENTS_SCHEMA,
    ).sort_by([("user_id", "ascending"), ("device_id", "ascending"), ("client_timestamp", "ascending")])
    return events, {"sizes": sizes, "rnd": rnd}


def events_frame(events: pa.Table) -> pd.DataFrame:
    """event_id, user_id, device_id and the event time as epoch ms (``ms``)."""
    ms = events.column("client_timestamp").cast(pa.int64())
    return events.select(["event_id", "user_id", "device_id"]).append_column("ms", ms).to_pandas()


def _ms(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).astype("datetime64[ms, UTC]").astype("int64")


def stream_side(batch_sessions: pd.DataFrame, events: pa.Table, seed: int) -> tuple[pa.Table, pa.Table, dict]:
    """The stream's sessions and late ledger: the batch's sessions with faults injected (see the module doc)."""
    rnd = np.random.default_rng(seed + 1)
    s = batch_sessions.copy()
    n = len(s)
    pick = rnd.random(n)
    multi = s["event_count"].to_numpy() >= 3
    late = multi & (pick < 0.01)
    missing = (pick >= 0.01) & (pick < 0.0105)
    mismatch = (pick >= 0.0105) & (pick < 0.011)
    ev = events_frame(events).sort_values(["user_id", "device_id", "ms"])
    # late: the session's last event went to the ledger, the stream's session ends at the event before
    late_keys = s.loc[late, ["user_id", "device_id", "last_ms"]]
    last_events = ev.merge(
        late_keys, left_on=["user_id", "device_id", "ms"], right_on=["user_id", "device_id", "last_ms"]
    )
    before = ev.groupby(["user_id", "device_id"])["ms"].nth(-2)
    prev = ev.loc[before.index, ["user_id", "device_id", "ms"]].rename(columns={"ms": "prev_ms"})
    s = s.merge(prev, on=["user_id", "device_id"], how="left")
    s.loc[late, "last_ms"] = s.loc[late, "prev_ms"]
    s.loc[late, "event_count"] -= 1
    s.loc[mismatch, "event_count"] += 1
    s = s.loc[~missing]
    extra = s.sample(frac=0.0005, random_state=seed).copy()
    extra["user_id"] += 10_000_000
    s = pd.concat([s, extra])
    rows = pa.table(
        {
            "session_id": s["session_id"],
            "user_id": s["user_id"].astype("int32"),
            "device_id": s["device_id"],
            "session_start": [iso_ms(x) for x in s["start_ms"]],
            "last_event_at": [iso_ms(x) for x in s["last_ms"]],
            "session_end": [iso_ms(x + GAP) for x in s["last_ms"]],
            "duration_ms": s["last_ms"] - s["start_ms"],
            "event_count": s["event_count"],
            "first_event": ["login"] * len(s),
            "last_event": ["login"] * len(s),
            "countrycode": ["DE"] * len(s),
        }
    ).cast(STREAM_SESSION_SCHEMA)
    ledger = pa.table(
        {
            "event_id": last_events["event_id"],
            "user_id": last_events["user_id"].astype("int32"),
            "device_id": last_events["device_id"],
            "client_event": ["login"] * len(last_events),
            "client_timestamp": [iso_ms(x) for x in last_events["ms"]],
            "countrycode": ["DE"] * len(last_events),
            "watermark_at": [iso_ms(x + 900_000) for x in last_events["ms"]],
            "arrival_time": [iso_ms(x + 900_000) for x in last_events["ms"]],
        }
    ).cast(LATE_SCHEMA)
    expected = {
        "late": int(late.sum()),
        "missing_in_stream": int(missing.sum()),
        "mismatch": int(mismatch.sum()),
        "missing_in_batch": len(extra),
    }
    return rows, ledger, expected


def naive_pandas(
    batch: pd.DataFrame,
    stream: pd.DataFrame,
    events: pd.DataFrame,
    late_ids: set[str],
    horizon_ms: int,
    hour_end_ms: int,
) -> dict[str, int]:
    """The same causes (matched, late, missing_in_stream, missing_in_batch, mismatch, deferred) the plain way:
    a key merge, an overlap filter, and a Python loop re-sessionizing the unmatched sessions."""
    b = batch[(batch["start_ms"] >= H_MS) & (batch["start_ms"] < hour_end_ms)].copy()
    b["settled"] = b["last_ms"] + GAP <= horizon_ms
    pairs = b.merge(stream, on=["user_id", "device_id"], suffixes=("", "_s"))
    pairs = pairs[(pairs["start_ms_s"] <= pairs["last_ms"]) & (pairs["last_ms_s"] >= pairs["start_ms"])]
    pairs["exact"] = (
        (pairs["start_ms_s"] == pairs["start_ms"])
        & (pairs["last_ms_s"] == pairs["last_ms"])
        & (pairs["event_count_s"] == pairs["event_count"])
    )
    exact = pairs.groupby("session_id")["exact"].any()
    b["exact"] = b["session_id"].map(exact).astype("boolean").fillna(False).astype(bool)
    b["n_stream"] = b["session_id"].map(pairs.groupby("session_id").size()).fillna(0)
    counts = {"deferred": int((~b["settled"]).sum())}
    b = b[b["settled"]]
    counts["matched"] = int(b["exact"].sum())
    cand = b[~b["exact"]]
    by_key = {k: g for k, g in events.groupby(["user_id", "device_id"])}
    stream_by_key = {k: g for k, g in stream.groupby(["user_id", "device_id"])}
    for cause in ("late", "missing_in_stream", "mismatch"):
        counts[cause] = 0
    for row in cand.itertuples():
        evs = by_key[(row.user_id, row.device_id)]
        evs = evs[(evs["ms"] >= row.start_ms) & (evs["ms"] <= row.last_ms)]
        kept = evs[~evs["event_id"].isin(late_ids)]
        sessions, current = [], []
        for ms in kept["ms"].sort_values():
            if current and ms - current[-1] > GAP:
                sessions.append((current[0], current[-1], len(current)))
                current = []
            current.append(ms)
        if current:
            sessions.append((current[0], current[-1], len(current)))
        st = stream_by_key.get((row.user_id, row.device_id))
        actual = []
        if st is not None:
            st = st[(st["start_ms"] <= row.last_ms) & (st["last_ms"] >= row.start_ms)]
            actual = sorted(zip(st["start_ms"], st["last_ms"], st["event_count"], strict=True))
        if len(kept) < len(evs) and sessions == actual:
            counts["late"] += 1
        elif row.n_stream == 0:
            counts["missing_in_stream"] += 1
        else:
            counts["mismatch"] += 1
    s_hour = stream[(stream["start_ms"] >= H_MS) & (stream["start_ms"] < hour_end_ms)]
    paired = s_hour.merge(batch, on=["user_id", "device_id"], suffixes=("", "_b"))
    paired = paired[(paired["start_ms_b"] <= paired["last_ms"]) & (paired["last_ms_b"] >= paired["start_ms"])]
    counts["missing_in_batch"] = int(len(s_hour) - paired["session_id"].nunique())
    return counts


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    print_machine()
    load_start = os.getloadavg()
    options = ReconcileOptions(now=HOUR.replace(day=28))
    window = HourWindow.of(HOUR, options)
    with tempfile.TemporaryDirectory(prefix="reconciliation-bench-") as tmp:
        t0 = time.perf_counter()
        events, _ = synthetic_hour(args.sessions, args.seed)
        path = Path(tmp) / "part-00000.parquet"
        pq.write_table(events, path, compression="zstd")
        # batch sessions once, to build the stream side from them
        first = reconcile_hour(HOUR, HourInputs(batch_events=[path]), options)
        batch_df = first.sessions.to_pandas()
        batch_df["start_ms"] = _ms(batch_df["session_start"])
        batch_df["last_ms"] = _ms(batch_df["last_event_at"])
        stream, ledger, injected = stream_side(batch_df, events, args.seed)
        generate_s = time.perf_counter() - t0
        inputs = HourInputs(batch_events=[path], stream_sessions=stream, stream_late=ledger)
        runs = []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), _cpu_s()
            result = reconcile_hour(HOUR, inputs, options)
            runs.append({"total": time.perf_counter() - t0, "cpu": _cpu_s() - c0, **result.stages})
        counts = result.report.counts
        results = {
            "sessions_in_hour": result.report.totals["batch"]["sessions"] + counts["deferred"],
            "events_read": result.report.totals["batch"]["window_events"],
            "generate_s": round(generate_s, 1),
            "batch_sessions_s": round(median([r["batch_sessions"] for r in runs]), 2),
            "classify_s": round(median([r["classify"] for r in runs]), 2),
            "report_s": round(median([r["report"] for r in runs]), 2),
            "reconcile_hour_s": round(median([r["total"] for r in runs]), 2),
            # CPU seconds of all threads: steadier than wall time on a shared machine (2 cores: wall >= cpu / 2)
            "reconcile_hour_cpu_s": round(median([r["cpu"] for r in runs]), 2),
            "counts": counts,
            "injected": injected,
        }
        results["batch_events_per_s"] = round(results["events_read"] / results["batch_sessions_s"])
        for cause, n in injected.items():
            assert counts[cause] == n, (cause, counts[cause], n)
        if not args.skip_pandas:
            t0 = time.perf_counter()
            stream_df = stream.to_pandas()
            stream_df["start_ms"] = _ms(stream_df["session_start"])
            stream_df["last_ms"] = _ms(stream_df["last_event_at"])
            ev = events_frame(events)
            naive = naive_pandas(
                batch_df,
                stream_df,
                ev,
                set(ledger.column("event_id").to_pylist()),
                window.horizon_ms,
                window.hour_end_ms,
            )
            results["pandas_s"] = round(time.perf_counter() - t0, 2)
            results["pandas_counts"] = naive
            for cause, n in naive.items():
                assert counts[cause] == n, ("pandas", cause, counts[cause], n)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    results["load_avg_start_end"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    print("| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

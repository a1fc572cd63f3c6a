"""End-to-end freshness: put of a session's last event into Kinesis → that session listed in S3.

``python -m bench.freshness_bench [--configs aws short] [--duration 240] [--json results.json]``

No pipeline can beat the floor of gap + watermark delay (65 s): a session closes only once an event 65 s newer
has arrived. What lies above the floor is the pipeline's own overhead (bridge, sink rollover, the checkpoint that
commits the file, the uploader), which this measures per checkpoint/rollover configuration. Events are produced
in real time (client_timestamp ≈ now) on a throwaway local endpoint; production goes on through the drain so the
watermark keeps moving, and only sessions whose closing event was put within ``--duration`` count.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import median, print_machine
from include.config import Settings
from include.flink_app.package import build, upload
from include.producer import KinesisWriter, ProducerParams, generate
from include.producer.records import ms_to_datetime
from include.provision import ensure_bucket, ensure_flink_application, ensure_stream
from include.sessions.contract import SessionContract
from localdev.aws.clients import local_client
from localdev.aws.endpoint import LocalEndpoint, free_port_pair
from localdev.aws.flink.jobs import duration_ms
from localdev.reference import check_records, sessionize, timestamp_ms

REGION = "us-east-1"


def _client(url: str, service: str) -> Any:
    return local_client(service, url, REGION, retries={"max_attempts": 5, "mode": "standard"})


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (``statistics.quantiles``, inclusive method)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(pct) - 1]


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


@dataclass
class Tick:
    """One producer step: events with client_timestamp in [lo_ms, hi_ms), all put when ``put_done``."""

    lo_ms: int
    hi_ms: int
    records: int
    max_event_ms: int  # newest event time put so far (the watermark source), this tick included
    put_done: float


class S3Watcher(threading.Thread):
    """Lists the sessions prefix every ``interval`` s; first-seen wall time of every session_id."""

    def __init__(self, url: str, bucket: str, prefix: str, interval: float):
        super().__init__(name="s3-watcher", daemon=True)
        self.s3 = _client(url, "s3")
        self.bucket, self.prefix, self.interval = bucket, prefix, interval
        self.stopping = threading.Event()
        self.keys: set[str] = set()
        self.first_seen: dict[str, float] = {}
        self.rows = 0
        self.polls = 0
        self.errors: list[str] = []

    def poll(self) -> None:
        new = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            new.extend(o["Key"] for o in page.get("Contents", ()) if o["Key"] not in self.keys)
        listed = time.time()
        self.polls += 1
        for key in new:
            self.keys.add(key)
            if key.rsplit("/", 1)[-1].startswith((".", "_")):
                continue
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode()
            for line in body.splitlines():
                if line.strip():
                    self.rows += 1
                    self.first_seen.setdefault(json.loads(line)["session_id"], listed)

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.poll()
            except Exception as exc:  # keep polling; reported with the results
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))


@dataclass
class RunResult:
    name: str
    checkpoint_ms: int
    rollover: str
    drain_s: float
    load_start: str
    load_end: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def _wait_status(kda: Any, name: str, wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        detail = kda.describe_application(ApplicationName=name)["ApplicationDetail"]
        status = detail["ApplicationStatus"]
        if status == wanted:
            return
        if wanted == "RUNNING" and status == "READY":
            raise RuntimeError(f"application {name} failed to start: {detail.get('ApplicationDescription')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"application {name} is {status}, not {wanted}, after {timeout:.0f}s")
        time.sleep(1)


def _produce(kinesis: Any, settings: Settings, params: ProducerParams, seconds: float, tick_s: float):
    """Real-time producer: every ``tick_s`` the events of the last tick are generated and put."""
    writer = KinesisWriter(kinesis, settings.stream_name)
    ticks: list[Tick] = []
    texts: list[str] = []
    newest = 0
    lo = int(time.time() * 1000)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(max(0.0, (lo + tick_s * 1000) / 1000 - time.time()))
        hi = int(time.time() * 1000)
        batch = generate(params, ms_to_datetime(lo), ms_to_datetime(hi))
        if batch.records:
            writer.put(batch.records)
            newest = max(newest, max(r.event_ms for r in batch.records))
            texts.extend(r.data.decode() for r in batch.records)
        ticks.append(Tick(lo, hi, len(batch.records), newest, time.time()))
        lo = hi
    return ticks, texts


def run_config(name: str, checkpoint_ms: int, rollover: str, args: argparse.Namespace) -> dict:
    contract = SessionContract()
    settings = Settings(flink_checkpoint_ms=checkpoint_ms, flink_rollover=rollover)
    # Worst case after the close: rollover + the local check interval (rollover / 2) + one checkpoint.
    worst_s = (checkpoint_ms + 1.5 * duration_ms(rollover, "rollover")) / 1000
    drain = args.drain if args.drain is not None else max(90.0, worst_s + 40)
    params = ProducerParams(
        seed=args.seed, users=args.users, events_per_second=args.events_per_second
    ).validate()
    result = RunResult(name, checkpoint_ms, rollover, drain, _load())

    def log(msg: str) -> None:
        print(f"[{name} {datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)

    with (
        tempfile.TemporaryDirectory(prefix="freshness-bench-") as tmp,
        LocalEndpoint(port=free_port_pair(), state_dir=Path(tmp) / "aws") as ep,
    ):
        s3, kinesis, kda = (_client(ep.url, s) for s in ("s3", "kinesis", "kinesisanalyticsv2"))
        ensure_bucket(s3, settings.bucket, REGION)
        ensure_bucket(s3, settings.artifacts_bucket, REGION)
        _, stream_arn = ensure_stream(kinesis, settings)
        manifest = build(Path(tmp) / "flink-app.zip")
        code = upload(s3, settings.artifacts_bucket, settings.flink_code_key, Path(tmp) / "flink-app.zip")
        ensure_flink_application(kda, settings, stream_arn, code["etag"], manifest["run_options"])
        t0 = time.monotonic()
        kda.start_application(
            ApplicationName=settings.flink_app,
            RunConfiguration={
                "ApplicationRestoreConfiguration": {"ApplicationRestoreType": "SKIP_RESTORE_FROM_SNAPSHOT"}
            },
        )
        try:
            _wait_status(kda, settings.flink_app, "RUNNING", 300 + checkpoint_ms / 1000)
            result.info["start_to_running_s"] = round(time.monotonic() - t0, 1)
            log(
                f"RUNNING after {result.info['start_to_running_s']} s; producing {args.duration + drain:.0f} s"
            )
            watcher = S3Watcher(
                ep.url, settings.bucket, f"{settings.streaming_prefix}sessions/", args.poll_interval
            )
            watcher.start()
            produce_start = time.time()
            ticks, texts = _produce(kinesis, settings, params, args.duration + drain, args.tick)
            watcher.stopping.set()
            watcher.join(30)
            late = sum(
                1
                for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=settings.bucket, Prefix=f"{settings.streaming_prefix}late_events/"
                )
                for obj in page.get("Contents", ())
                if not obj["Key"].rsplit("/", 1)[-1].startswith((".", "_"))
                for line in s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read().splitlines()
                if line.strip()
            )
        finally:
            try:
                kda.stop_application(ApplicationName=settings.flink_app, Force=True)
                _wait_status(kda, settings.flink_app, "READY", 120)
            except Exception as exc:
                log(f"stopping the application: {exc}")
    result.load_end = _load()
    log(f"done: {len(ticks)} ticks, {len(texts)} records, {len(watcher.first_seen)} sessions seen in S3")

    checked = check_records(texts, contract, now_ms=int(time.time() * 1000))
    sessions = sessionize(checked.events, contract)
    measure_end = produce_start + args.duration
    los = [t.lo_ms for t in ticks]
    newest = [t.max_event_ms for t in ticks]
    fresh, close_to_s3, missing = [], [], 0
    for s in sessions:
        last_ms = timestamp_ms(s["last_event_at"])
        closing = bisect.bisect_left(newest, last_ms + contract.gap_ms + contract.watermark_delay_ms - 1)
        if closing >= len(ticks) or ticks[closing].put_done > measure_end:
            continue  # could not close inside the measuring window
        seen = watcher.first_seen.get(s["session_id"])
        if seen is None:
            missing += 1
            continue
        put = ticks[bisect.bisect_right(los, last_ms) - 1].put_done
        fresh.append(seen - put)
        close_to_s3.append(seen - ticks[closing].put_done)
    floor_s = (contract.gap_ms + contract.watermark_delay_ms) / 1000
    known = {s["session_id"] for s in sessions}
    out = {
        "config": name,
        "checkpoint_ms": checkpoint_ms,
        "rollover": rollover,
        "duration_s": args.duration,
        "drain_s": drain,
        "events_per_second": args.events_per_second,
        "records_put": len(texts),
        "rejected": len(checked.rejected),
        "late_events_in_s3": late,
        "sessions_in_s3": len(watcher.first_seen),
        "unknown_sessions_in_s3": len(set(watcher.first_seen) - known),
        "s3_polls": watcher.polls,
        "s3_poll_errors": watcher.errors[:3],
        "measured": len(fresh),
        "missing": missing,
        "floor_s": floor_s,
        "load_start": result.load_start,
        "load_end": result.load_end,
        **result.info,
        "put_lag_p50_s": round(median([t.put_done - t.hi_ms / 1000 for t in ticks]), 3),
    }
    if fresh:
        out.update(
            {
                "freshness_p50_s": round(percentile(fresh, 50), 1),
                "freshness_p95_s": round(percentile(fresh, 95), 1),
                "freshness_max_s": round(max(fresh), 1),
                "freshness_min_s": round(min(fresh), 1),
                "over_floor_p50_s": round(percentile(fresh, 50) - floor_s, 1),
                "close_to_s3_p50_s": round(percentile(close_to_s3, 50), 1),
                "close_to_s3_p95_s": round(percentile(close_to_s3, 95), 1),
            }
        )
    return out


def print_table(results: list[dict]) -> None:
    print(
        "| configuration | sessions measured (missing) | freshness p50 | p95 | max | p50 − floor (65 s) "
        "| closing put → S3 p50 / p95 | load avg start → end |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        cfg = f"{r['config']}: checkpoint {r['checkpoint_ms'] / 1000:g} s, rollover {r['rollover']}"
        if not r["measured"]:
            print(f"| {cfg} | 0 ({r['missing']}) | – | – | – | – | – | {r['load_start']} → {r['load_end']} |")
            continue
        print(
            f"| {cfg} | {r['measured']} ({r['missing']}) | {r['freshness_p50_s']:.1f} s | {r['freshness_p95_s']:.1f} s "
            f"| {r['freshness_max_s']:.1f} s | {r['over_floor_p50_s']:.1f} s "
            f"| {r['close_to_s3_p50_s']:.1f} / {r['close_to_s3_p95_s']:.1f} s | {r['load_start']} → {r['load_end']} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=("aws", "short"),
        default=["aws", "short"],
        help="aws: 60 s checkpoint, '1 min' rollover (the defaults); short: see --short-*",
    )
    parser.add_argument("--short-checkpoint-ms", type=int, default=5_000)
    parser.add_argument("--short-rollover", default="5 s")
    parser.add_argument(
        "--duration", type=float, default=240.0, help="measuring window (s) per configuration"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=None,
        help="production after the window (s); default checkpoint + 1.5 × rollover + 40, at least 90",
    )
    parser.add_argument("--events-per-second", type=float, default=20.0)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=float, default=1.0, help="producer step (s)")
    parser.add_argument("--poll-interval", type=float, default=0.5, help="S3 listing interval (s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    configs = {
        "aws": (60_000, "1 min"),  # include/config.py's defaults, whatever the environment says
        "short": (args.short_checkpoint_ms, args.short_rollover),
    }
    started = datetime.now(UTC)
    results = [run_config(name, *configs[name], args) for name in args.configs]
    print_machine()
    print(
        f"Started {started:%Y-%m-%d %H:%M} UTC; {args.events_per_second:g} events/s real time, {args.tick:g} s producer "
        f"tick, S3 listed every {args.poll_interval:g} s; window {args.duration:g} s per configuration.\n"
    )
    print_table(results)
    print()
    for r in results:
        print(f"- {r['config']}: {json.dumps(r)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["measured"] and not r["missing"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

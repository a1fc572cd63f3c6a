"""Ingest benchmark: producer → Kinesis (events/s) and Firehose delivery to S3 (events/s), local endpoint.

Starts a throwaway local endpoint, provisions the stream and delivery stream with the pipeline's own code
(include.provision, 1 s Firehose buffer), then for each run generates one interval with the real producer,
times ``KinesisWriter.put`` and then the time until the companion reports every record delivered.
Prints a markdown table with the median of ``--runs`` runs. Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from bench.machine import median, print_machine
from include.config import Settings
from include.producer import KinesisWriter, ProducerParams, generate
from include.provision import ensure_bucket, ensure_delivery_stream, ensure_stream
from localdev.aws.clients import local_client
from localdev.aws.endpoint import LocalEndpoint, free_port_pair


def _delivered(url: str, name: str) -> int:
    with urllib.request.urlopen(f"{url}/_companion/firehose/{name}") as resp:
        stats = json.load(resp)
    return stats["records_delivered"] + stats["records_failed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--events-per-second", type=float, default=500.0, help="producer rate (1 minute each run)"
    )
    args = parser.parse_args(argv)
    settings = Settings(firehose_buffer_seconds=1)
    port = free_port_pair()
    put_rates, delivery_rates, end_to_end = [], [], []
    with tempfile.TemporaryDirectory() as state, LocalEndpoint(port=port, state_dir=state) as ep:
        ensure_bucket(local_client("s3", ep.url), settings.bucket, "us-east-1")
        _, arn = ensure_stream(local_client("kinesis", ep.url), settings)
        ensure_delivery_stream(local_client("firehose", ep.url), settings, arn)
        kinesis = local_client("kinesis", ep.url)
        params = ProducerParams(
            users=int(args.events_per_second * 100) + 1, events_per_second=args.events_per_second
        )
        start = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
        for run in range(args.runs):
            begin = start + timedelta(minutes=run)
            batch = generate(params, begin, begin + timedelta(minutes=1))
            already = _delivered(ep.url, settings.delivery_stream)
            t0 = time.perf_counter()
            KinesisWriter(kinesis, settings.stream_name).put(batch.records)
            t_put = time.perf_counter() - t0
            while _delivered(ep.url, settings.delivery_stream) - already < len(batch.records):
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError("delivery did not finish in 10 minutes")
                time.sleep(0.1)
            t_all = time.perf_counter() - t0
            n = len(batch.records)
            put_rates.append(n / t_put)
            end_to_end.append(t_all)
            delivery_rates.append(n / t_all)
            print(
                f"run {run + 1}: {n} records, put {t_put:.2f}s, delivered after {t_all:.2f}s", file=sys.stderr
            )
    print_machine()
    n = len(batch.records)
    print(f"| ingest ({n} records/run, {args.runs} runs, 2 shards, 1 s buffer) | median | min | max |")
    print("|---|---|---|---|")
    print(
        f"| producer → Kinesis (events/s) | {median(put_rates):,.0f} | {min(put_rates):,.0f} | {max(put_rates):,.0f} |"
    )
    print(
        f"| put + Firehose delivery to S3 (events/s) | {median(delivery_rates):,.0f} | {min(delivery_rates):,.0f} |"
        f" {max(delivery_rates):,.0f} |"
    )
    print(
        f"| first put → last record in S3 (s) | {median(end_to_end):.2f} | {min(end_to_end):.2f} | {max(end_to_end):.2f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measure the local endpoint: Kinesis PutRecords via the gateway vs straight to moto; Firehose delivery.

``python -m bench.local_endpoint_bench [--records 50000]`` starts a throwaway endpoint on free ports (its own
temporary state directory), prints one JSON document with the numbers, and stops it again.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from typing import Any

from include.config import PARTITION_QUERY, Settings
from localdev.aws.clients import local_client
from localdev.aws.endpoint import LocalEndpoint, free_port_pair

ROLE = "arn:aws:iam::123456789012:role/bench"


def _client(url: str, service: str) -> Any:
    return local_client(
        service, url, retries={"max_attempts": 5, "mode": "standard"}, max_pool_connections=16
    )


def _event(i: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"{i:08d}-0000-4000-8000-000000000000",
            "user_id": i % 5000 + 1,
            "device_id": "mobile",
            "client_event": "view_beer_list",
            "client_timestamp": f"2026-11-27T{i % 24:02d}:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
            "countrycode": "BE",
        },
        separators=(",", ":"),
    ).encode()


def put_records(url: str, stream: str, payloads: list[bytes], threads: int) -> float:
    """Seconds to PutRecords all payloads in batches of 500 from ``threads`` producers."""
    batches = [payloads[i : i + 500] for i in range(0, len(payloads), 500)]
    lock = threading.Lock()

    def produce() -> None:
        kinesis = _client(url, "kinesis")
        while True:
            with lock:
                if not batches:
                    return
                batch = batches.pop()
            records = [{"Data": d, "PartitionKey": str(hash(d))} for d in batch]
            while records:
                result = kinesis.put_records(StreamName=stream, Records=records)
                records = [r for r, res in zip(records, result["Records"], strict=True) if "ErrorCode" in res]

    workers = [threading.Thread(target=produce) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started


def _stats(url: str, name: str) -> dict:
    with urllib.request.urlopen(f"{url}/_companion/firehose/{name}", timeout=30) as resp:
        return json.loads(resp.read())


def run(records: int, put_sample: int, threads: int) -> dict:
    settings = Settings()
    with (
        tempfile.TemporaryDirectory(prefix="local-aws-bench-") as state,
        LocalEndpoint(free_port_pair(), state) as ep,
    ):
        kinesis = _client(ep.url, "kinesis")
        results: dict[str, Any] = {"records": records}
        sample = [_event(i) for i in range(put_sample)]
        kinesis.create_stream(StreamName="bench-warmup", ShardCount=1)
        for url in (ep.url, ep.moto_url):  # first requests pay for imports and connection set-up
            put_records(url, "bench-warmup", sample[:2000], 1)
        for label, url in (("via_gateway", ep.url), ("direct_moto", ep.moto_url)):
            for n in (1, threads):
                stream = f"bench-{label}-{n}".replace("_", "-")  # a fresh stream per measurement
                kinesis.create_stream(StreamName=stream, ShardCount=2)
                seconds = put_records(url, stream, sample, n)
                results[f"put_records_{label}_{n}_threads_per_s"] = round(len(sample) / seconds)

        _client(ep.url, "s3").create_bucket(Bucket="bench-lake")
        kinesis.create_stream(StreamName="bench-events", ShardCount=2)
        arn = kinesis.describe_stream_summary(StreamName="bench-events")["StreamDescriptionSummary"][
            "StreamARN"
        ]
        firehose = _client(ep.url, "firehose")
        firehose.create_delivery_stream(
            DeliveryStreamName="bench-delivery",
            DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": ROLE},
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE,
                "BucketARN": "arn:aws:s3:::bench-lake",
                "Prefix": settings.firehose_prefix,
                "ErrorOutputPrefix": settings.firehose_error_prefix,
                "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 1},
                "CompressionFormat": "GZIP",
                "DynamicPartitioningConfiguration": {"Enabled": True},
                "ProcessingConfiguration": {
                    "Enabled": True,
                    "Processors": [
                        {
                            "Type": "MetadataExtraction",
                            "Parameters": [
                                {
                                    "ParameterName": "MetadataExtractionQuery",
                                    "ParameterValue": PARTITION_QUERY,
                                },
                                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                            ],
                        },
                        {"Type": "AppendDelimiterToRecord"},
                    ],
                },
            },
        )
        while _stats(ep.url, "bench-delivery").get("status") != "ACTIVE":
            time.sleep(0.1)
        payloads = [_event(i) for i in range(records)]
        started = time.perf_counter()
        put_seconds = put_records(ep.url, "bench-events", payloads, threads)
        while True:
            stats = _stats(ep.url, "bench-delivery")
            if stats.get("records_delivered", 0) >= records:
                break
            time.sleep(0.05)
        total = time.perf_counter() - started
        results.update(
            {
                "firehose_put_seconds": round(put_seconds, 2),
                "firehose_end_to_end_seconds": round(total, 2),
                "firehose_end_to_end_events_per_s": round(records / total),
                "firehose_objects_written": stats["objects_written"],
                "firehose_flushes": stats["flushes"],
                "note": "buffer interval 1 s; end-to-end = first PutRecords until the last record is in S3",
            }
        )
        return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--put-sample", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    print(json.dumps(run(args.records, args.put_sample, args.threads), indent=2))


if __name__ == "__main__":
    main()

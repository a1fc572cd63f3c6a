"""The Kinesis → spool bridge keeps arrival order across shards when records land between two shard polls."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from localdev.aws.flink.bridge import Bridge
from localdev.aws.flink.spool import Spool
from tests.local_aws.support import wait_for

LOG = logging.getLogger("test-bridge-order")
UPPER_HALF = str(2**127)  # an explicit hash key in the second of two shards


class PutBetweenPolls:
    """The real Kinesis client; right after the first GetRecords of the first shard (at its tip, empty) it puts
    ``n`` records alternating over both shards — a live PutRecords landing between the polls of two shards."""

    def __init__(self, kinesis: Any, stream: str, n: int):
        self.kinesis, self.stream, self.n = kinesis, stream, n
        self.injected = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kinesis, name)

    def get_records(self, **kwargs: Any) -> dict:
        resp = self.kinesis.get_records(**kwargs)
        if not self.injected:
            self.injected = True
            for i in range(self.n):
                self.kinesis.put_record(
                    StreamName=self.stream,
                    Data=json.dumps({"id": i}).encode(),
                    PartitionKey="k",
                    ExplicitHashKey="0" if i % 2 == 0 else UPPER_HALF,
                )
                time.sleep(0.002)  # successive milliseconds of arrival
        return resp


def test_a_put_between_the_polls_of_two_shards_stays_in_arrival_order(endpoint, client, tmp_path):
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="bridge-order", ShardCount=2)
    arn = kinesis.describe_stream_summary(StreamName="bridge-order")["StreamDescriptionSummary"]["StreamARN"]
    spool = Spool(tmp_path / "spool", 0.1)
    fatal: list[str] = []
    bridge = Bridge(
        spool,
        PutBetweenPolls(kinesis, "bridge-order", 40),
        arn,
        ("TRIM_HORIZON", spool.epoch_created()),
        LOG,
        fatal.append,
    )
    lines: list[bytes] = []
    done: set[str] = set()
    bridge.start()
    try:

        def read_all() -> bool:  # like the job's single reader: oldest visible file first
            for path in sorted(spool.source_dir().glob("*.jsonl")):
                if path.name not in done:
                    lines.extend(path.read_bytes().splitlines())
                    done.add(path.name)
            return len(lines) >= 40

        wait_for(read_all, 30, "40 records in the spool")
    finally:
        bridge.stop()
    assert fatal == []
    assert [json.loads(line)["id"] for line in lines] == list(range(40))

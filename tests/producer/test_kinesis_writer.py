"""KinesisWriter: batching limits, partial-failure retries, throttling, rate limits and a moto stream."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from include.producer import KinesisWriter, ProducerDeliveryError, ProducerParams, RateLimiter, generate
from include.producer.kinesis_writer import MAX_BYTES_PER_CALL, MAX_RECORD_BYTES

from .conftest import HOUR


class FakeClock:
    """Time that only moves when the writer sleeps: exact, instant tests of waits and backoff."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


class UpperJitter:
    """An RNG whose full jitter always picks the cap, so the backoff schedule is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


class StubKinesis:
    """Records every PutRecords call; ``fail`` decides per call which entries (by data) fail or raises."""

    def __init__(self, fail=None, shards: int = 4) -> None:
        self.calls: list[list[dict]] = []
        self.fail = fail or (lambda call_no, records: set())
        self.shards = shards
        self.delivered: list[bytes] = []

    def describe_stream_summary(self, StreamName):
        return {"StreamDescriptionSummary": {"StreamName": StreamName, "OpenShardCount": self.shards}}

    def put_records(self, StreamName, Records):
        self.calls.append(Records)
        outcome = self.fail(len(self.calls), Records)
        if isinstance(outcome, Exception):
            raise outcome
        results = []
        for r in Records:
            if r["Data"] in outcome:
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
                )
            else:
                self.delivered.append(r["Data"])
                results.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": len(outcome), "Records": results}


def _records(n: int, size: int = 10) -> list[tuple[bytes, str]]:
    return [(f"{i:08d}".encode().ljust(size, b"."), str(i % 97)) for i in range(n)]


def _writer(client, clock=None, **kwargs) -> KinesisWriter:
    clock = clock or FakeClock()
    return KinesisWriter(client, "clicks", sleep=clock.sleep, clock=clock, rng=UpperJitter(), **kwargs)


def _client_error(code: str, status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutRecords",
    )


def test_batches_hold_at_most_500_records():
    client = StubKinesis()
    report = _writer(client).put(_records(1_201))
    assert [len(c) for c in client.calls] == [500, 500, 201]
    assert report.sent == 1_201 and report.failed == 0 and report.retried == 0
    assert report.batches == 3 and report.calls == 3 and report.shards == 4
    assert client.delivered == [d for d, _ in _records(1_201)]


def test_batches_hold_at_most_5_mib_counting_partition_keys():
    client = StubKinesis(shards=10)
    records = _records(30, size=400_000)  # 12 MB in all: several calls by size, not by count
    _writer(client).put(records)
    sizes = [sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in call) for call in client.calls]
    assert len(client.calls) == 3
    assert all(s <= MAX_BYTES_PER_CALL for s in sizes)
    # 13 records of 400,000 bytes fit in 5 MiB only without their keys; the writer counts the keys too.
    exact = [(b"x" * (MAX_BYTES_PER_CALL // 13), "k" * 10) for _ in range(13)]
    client.calls.clear()
    _writer(client).put(exact)
    assert [len(c) for c in client.calls] == [12, 1]


def test_oversized_record_is_rejected_before_anything_is_sent():
    client = StubKinesis()
    records = _records(10) + [(b"x" * (MAX_RECORD_BYTES - 2), "key")]
    with pytest.raises(ValueError, match=r"record 10 \(partition key 'key'\) is 1048577 bytes"):
        _writer(client).put(records)
    assert client.calls == []
    with pytest.raises(ValueError, match="partition_key must be a string of 1 to 256 characters"):
        _writer(client).put([(b"x", "")])
    with pytest.raises(TypeError, match="data must be bytes"):
        _writer(client).put([("text", "k")])


def test_only_failed_entries_are_retried_with_growing_backoff():
    records = _records(700)
    flaky = {records[3][0], records[7][0], records[650][0]}

    def fail(call_no, batch):
        # The first call fails 2 entries, their first retry fails one again; the second batch fails one once.
        if call_no == 1:
            return {records[3][0], records[7][0]}
        if call_no == 2:
            return {records[7][0]}
        if call_no == 4:
            return {records[650][0]}
        return set()

    client = StubKinesis(fail=fail)
    clock = FakeClock()
    report = _writer(client, clock, base_delay=0.1, max_delay=5.0).put(records)
    sent_per_call = [[r["Data"] for r in call] for call in client.calls]
    assert [len(c) for c in sent_per_call] == [500, 2, 1, 200, 1]
    assert sent_per_call[1] == [records[3][0], records[7][0]]
    assert sent_per_call[2] == [records[7][0]]
    assert sent_per_call[4] == [records[650][0]]
    assert clock.sleeps == [0.1, 0.2, 0.1]  # exponential per batch, full jitter capped (UpperJitter)
    assert report.sent == 700 and report.failed == 0 and report.retried == 4
    assert report.calls == 5 and report.batches == 2
    assert report.error_codes == {"ProvisionedThroughputExceededException": 4}
    assert sorted(client.delivered) == sorted(d for d, _ in records)
    assert flaky <= set(client.delivered)


def test_backoff_is_capped_and_final_failure_raises_with_counts():
    records = _records(600)
    stuck = records[550][0]
    client = StubKinesis(fail=lambda n, batch: {stuck} if any(r["Data"] == stuck for r in batch) else set())
    clock = FakeClock()
    writer = _writer(client, clock, max_attempts=6, base_delay=0.5, max_delay=3.0)
    with pytest.raises(ProducerDeliveryError) as info:
        writer.put(records)
    err = info.value
    assert clock.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert err.sent == 599 and err.failed == 1
    assert err.report.retried == 5 and err.report.calls == 7
    assert "599 of 600 records were sent, 1 were not delivered" in str(err)
    assert "still failing after 6 attempts" in str(err)


def test_stops_at_the_first_undeliverable_batch_and_counts_the_rest_as_failed():
    records = _records(1_200)
    client = StubKinesis(fail=lambda n, batch: {r["Data"] for r in batch} if n >= 2 else set())
    with pytest.raises(ProducerDeliveryError) as info:
        _writer(client, max_attempts=2).put(records)
    assert (info.value.sent, info.value.failed) == (500, 700)
    assert len(client.calls) == 3  # batch 1, batch 2 and its single retry; batch 3 was never sent


def test_whole_call_throttling_is_retried():
    outcomes = [
        _client_error("ProvisionedThroughputExceededException"),
        EndpointConnectionError(endpoint_url="x"),
    ]
    client = StubKinesis(fail=lambda n, batch: outcomes[n - 1] if n <= len(outcomes) else set())
    clock = FakeClock()
    report = _writer(client, clock).put(_records(20))
    assert report.sent == 20 and report.calls == 3 and report.retried == 40
    assert report.error_codes == {"ProvisionedThroughputExceededException": 20, "EndpointConnectionError": 20}
    assert clock.sleeps == [0.1, 0.2]


def test_server_errors_are_retried_but_client_errors_are_not():
    client = StubKinesis(fail=lambda n, batch: _client_error("SomethingBroke", 503) if n == 1 else set())
    assert _writer(client).put(_records(5)).sent == 5
    client = StubKinesis(fail=lambda n, batch: _client_error("ResourceNotFoundException"))
    with pytest.raises(ProducerDeliveryError, match="ResourceNotFoundException") as info:
        _writer(client).put(_records(5))
    assert len(client.calls) == 1 and info.value.failed == 5


def test_permanent_entry_errors_fail_fast():
    class KmsDenied(StubKinesis):
        def put_records(self, StreamName, Records):
            self.calls.append(Records)
            return {
                "FailedRecordCount": 1,
                "Records": [{"ErrorCode": "KMSAccessDeniedException"}] + [{}] * (len(Records) - 1),
            }

    client = KmsDenied()
    with pytest.raises(ProducerDeliveryError, match="permanent error") as info:
        _writer(client).put(_records(3))
    assert len(client.calls) == 1 and (info.value.sent, info.value.failed) == (2, 1)


def test_rate_limiter_keeps_the_record_rate_with_a_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter(1000, 1_048_576, clock=clock, sleep=clock.sleep)
    start = clock.now
    for _ in range(10):
        limiter.acquire(500, 500)
    # 5,000 records at 1,000/s with a one-second burst: 4 seconds.
    assert clock.now - start == pytest.approx(4.0)
    with pytest.raises(ValueError, match="exceeds the limiter's burst"):
        limiter.acquire(1001, 1)


def test_writer_respects_shard_byte_limits():
    clock = FakeClock()
    client = StubKinesis(shards=1)
    writer = _writer(client, clock)
    assert writer.max_batch_bytes == 1_048_576 and writer.max_batch_records == 500
    report = writer.put(_records(50, size=100_000))  # 5 MB on one shard: 1 MiB/s
    assert all(sum(len(r["Data"]) for r in call) <= 1_048_576 for call in client.calls)
    expected = (50 * (100_000 + 2) - 1_048_576) / 1_048_576
    assert report.seconds == pytest.approx(expected, rel=0.05)
    assert report.throttle_wait_seconds == pytest.approx(report.seconds)


def test_two_shards_double_the_budget():
    clock = FakeClock()
    client = StubKinesis(shards=2)
    report = _writer(client, clock).put(_records(6_000))
    assert report.seconds == pytest.approx(2.0)  # 6,000 records at 2,000/s after a 2,000-record burst


def test_shard_count_is_discovered_or_checked():
    assert _writer(StubKinesis(shards=3)).shard_count == 3
    with pytest.raises(ValueError, match="shard_count must be an integer >= 1, got 0"):
        _writer(StubKinesis(), shard_count=0)


def test_round_trip_through_a_moto_stream(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    params = ProducerParams(
        seed=1, users=500, events_per_second=5, malformed_fraction=0.2, duplicate_fraction=0.1
    )
    batch = generate(params, HOUR, HOUR + timedelta(minutes=2))
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName="clicks", ShardCount=2)
        report = KinesisWriter(client, "clicks").put(batch.records)
        assert report.sent == len(batch) and report.shards == 2
        got = []
        for shard in client.list_shards(StreamName="clicks")["Shards"]:
            iterator = client.get_shard_iterator(
                StreamName="clicks", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            got.extend(
                (r["Data"], r["PartitionKey"])
                for r in client.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
            )
    assert sorted(got) == sorted((r.data, r.partition_key) for r in batch.records)

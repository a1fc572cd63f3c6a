"""produce_interval: validation before side effects, chunking that does not change what is sent, reports."""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.producer import ProducerDeliveryError, ProducerParams, generate, produce_interval
from include.producer import produce as produce_module
from include.producer.generator import to_ms
from include.producer.records import ms_to_datetime

from .conftest import HOUR
from .test_kinesis_writer import FakeClock, StubKinesis, _writer


class Untouchable:
    """A client that must never be called."""

    def __getattr__(self, name):
        raise AssertionError(f"client.{name} was called before validation finished")


PARAMS = {
    "seed": 8,
    "users": 800,
    "events_per_second": 4,
    "duplicate_fraction": 0.1,
    "resend_fraction": 0.1,
    "resend_delay_seconds": 200,
    "malformed_fraction": 0.05,
}


@pytest.mark.parametrize(
    ("params", "start", "end", "message"),
    [
        (
            {"users": -3},
            HOUR,
            HOUR + timedelta(minutes=1),
            "users must be an integer between 1 and 1000000, got -3",
        ),
        ({"speed": 1}, HOUR, HOUR + timedelta(minutes=1), "unknown producer parameter(s) 'speed'"),
        (PARAMS, HOUR, HOUR, "start must be before end"),
        (PARAMS, HOUR.replace(tzinfo=None), HOUR, "start must be timezone-aware"),
    ],
)
def test_validation_happens_before_any_call(params, start, end, message):
    with pytest.raises(ValueError) as info:
        produce_interval(Untouchable(), "clicks", params, start, end)
    assert message in str(info.value)


def test_sends_exactly_the_ground_truth_and_reports_it(monkeypatch):
    # Small chunks, so the interval is produced in several pieces that cross an hour boundary.
    monkeypatch.setattr(produce_module, "CHUNK_RECORDS", 1_000)
    start, end = HOUR - timedelta(minutes=7), HOUR + timedelta(minutes=5)
    client = StubKinesis(shards=2)
    report = produce_interval(client, "clicks", PARAMS, start, end, writer=_writer(client))
    truth = generate(ProducerParams.from_dict(PARAMS), start, end)
    assert client.delivered == [r.data for r in truth.records]
    assert [e["PartitionKey"] for call in client.calls for e in call] == [
        r.partition_key for r in truth.records
    ]
    assert report["records"] == report["sent"] == len(truth)
    assert report["by_kind"] == truth.counts_by_kind()
    assert report["valid_events"] == len(truth.valid_events())
    assert report["malformed"] == len(truth.malformed()) > 0
    assert report["duplicates"] == len(truth.duplicates()) > 0
    # resent copies cross chunk boundaries (200 s after the original): each event still counts once
    assert report["resent"] == len(truth.resent()) > 0
    assert report["failed"] == 0 and report["shards"] == 2
    assert report["start"] == start.isoformat() and report["params"]["seed"] == 8
    assert len(produce_module.chunk_bounds(truth.params, 0, 720_000)) == 3


def test_chunks_align_to_absolute_boundaries():
    params = ProducerParams(users=100_000, events_per_second=1_000)
    bounds = produce_module.chunk_bounds(params, 1_000, 1_500_000)
    assert bounds[0] == (1_000, 500_000) and bounds[-1] == (1_000_000, 1_500_000)
    assert all(a < b for a, b in bounds) and all(
        x[1] == y[0] for x, y in zip(bounds, bounds[1:], strict=False)
    )


def test_delivery_failure_reports_counts_over_the_interval(monkeypatch):
    monkeypatch.setattr(produce_module, "CHUNK_RECORDS", 1_000)
    start, end = HOUR, HOUR + timedelta(minutes=12)
    params = ProducerParams.from_dict(PARAMS)
    chunks = produce_module.chunk_bounds(params, to_ms(start), to_ms(end))
    assert len(chunks) >= 3
    first_chunk = len(generate(params, start, ms_to_datetime(chunks[0][1])))
    client = StubKinesis(
        fail=lambda n, batch: {r["Data"] for r in batch} if len(client.delivered) >= first_chunk else set()
    )
    clock = FakeClock()
    with pytest.raises(ProducerDeliveryError) as info:
        produce_interval(client, "clicks", PARAMS, start, end, writer=_writer(client, clock, max_attempts=3))
    err = info.value
    assert err.sent == first_chunk == len(client.delivered)
    assert err.failed > 0
    assert "were neither generated nor sent" in str(err)

"""The Kinesis fixes applied to moto before its server starts, checked in-process on moto's own classes."""

from __future__ import annotations

import threading
import time

import pytest
from moto.kinesis import models

from localdev.aws.moto_server import patch_kinesis

PATCHED = [
    (models.Shard, "put_record"),
    (models.Shard, "get_records"),
    (models.Shard, "get_min_sequence_number"),
    (models.Shard, "get_max_sequence_number"),
    (models.Stream, "get_shard_for_key"),
]


@pytest.fixture
def patched():
    """Patch for one test, then put moto back as it was (other tests may use moto in-process)."""
    originals = [(cls, name, cls.__dict__[name]) for cls, name in PATCHED]
    patch_kinesis()
    try:
        yield
    finally:
        for cls, name, original in originals:
            setattr(cls, name, original)


def test_sequence_numbers_and_reads(patched):
    shard = models.Shard(0, 0, 2**128 - 1)
    assert shard.get_max_sequence_number() == 0 and shard.get_min_sequence_number() == 0
    assert [shard.put_record("p", f"d{i}", None) for i in range(5)] == ["1", "2", "3", "4", "5"]
    records, last, _ = shard.get_records("0", 2)
    assert [r.sequence_number for r in records] == [1, 2] and last == 2
    records, last, _ = shard.get_records("2", None)
    assert [r.sequence_number for r in records] == [3, 4, 5] and last == 5
    records, last, behind = shard.get_records("5", 10)
    assert records == [] and last == 5 and behind == 0
    assert shard.get_min_sequence_number() == 1 and shard.get_max_sequence_number() == 5


def test_concurrent_puts_get_distinct_numbers(patched):
    shard = models.Shard(0, 0, 2**128 - 1)
    out: list[str] = []

    def put() -> None:
        for _ in range(2000):
            out.append(shard.put_record("p", "d", None))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == len(shard.records) == 16000


def test_puts_stay_fast_on_a_large_shard(patched):
    shard = models.Shard(0, 0, 2**128 - 1)
    for _ in range(50_000):
        shard.put_record("p", "d", None)
    started = time.perf_counter()
    for _ in range(500):
        shard.put_record("p", "d", None)
    shard.get_records("50400", 10_000)
    assert time.perf_counter() - started < 0.3  # unpatched: about a second


def test_new_records_avoid_closed_shards(patched):
    stream = models.Stream("s", 1, None, None, "123456789012", "us-east-1")
    for i in range(10):
        stream.put_record(f"k{i}", None, "d")
    stream.update_shard_count(2)
    parent, *children = sorted(stream.shards.values(), key=lambda s: s.shard_id)
    assert not parent.is_open
    for i in range(50):
        stream.put_record(f"key-{i}", None, "d")
    assert len(parent.records) == 0  # moto moved the parent's records to the children...
    assert sum(len(c.records) for c in children) == 60  # ...and new ones land there too

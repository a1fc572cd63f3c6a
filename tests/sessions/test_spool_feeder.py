"""The sessions runner's feeder hands Flink one source file at a time: the next only once the job has started
reading the last (localdev.file_pickup), so a slow job never lists two files together and reads them out of
arrival order. No JVM: the test reads the files the way the job's source does."""

from pathlib import Path

import pytest

from localdev.file_pickup import atime_tracks_reads
from localdev.flink_runner.feeder import SpoolFeeder, spool_events, spool_source


def read_like_the_job(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture
def spool(tmp_path):
    if not atime_tracks_reads(tmp_path):
        pytest.fail(f"{tmp_path} is on a noatime mount: the feeder would fall back to one file per tick")
    return tmp_path / "spool"


def test_the_next_file_waits_until_the_job_has_read_the_last(spool):
    feeder = SpoolFeeder(spool, interval_s=60)
    spool_events(spool, ['{"n": 1}'])
    first = feeder.feed_once()
    assert first is not None and read_like_the_job(first) == b'{"n": 1}\n'
    # the job has read the first file: two writes before the next tick go out together, in arrival order
    spool_events(spool, ['{"n": 2}'])
    spool_events(spool, ['{"n": 3}'])
    second = feeder.feed_once()
    assert second is not None and second.name > first.name
    spool_events(spool, ['{"n": 4}'])
    assert feeder.feed_once() is None  # the job has not picked up the second file yet
    assert sorted(p.name for p in spool_source(spool).iterdir()) == [first.name, second.name]
    assert read_like_the_job(second) == b'{"n": 2}\n{"n": 3}\n'
    third = feeder.feed_once()
    assert third is not None and read_like_the_job(third) == b'{"n": 4}\n'


def test_a_feeder_restarted_over_an_unread_file_waits_for_it(spool):
    feeder = SpoolFeeder(spool, interval_s=60)
    spool_events(spool, ['{"n": 1}'])
    unread = feeder.feed_once()
    # the runner restarts (a job restored from a savepoint) before the job read the file
    restarted = SpoolFeeder(spool, interval_s=60)
    spool_events(spool, ['{"n": 2}'])
    assert restarted.feed_once() is None
    read_like_the_job(unread)
    handed = restarted.feed_once()
    assert handed is not None and handed.name > unread.name and read_like_the_job(handed) == b'{"n": 2}\n'


def test_an_empty_inbox_hands_over_nothing(spool):
    assert SpoolFeeder(spool, interval_s=60).feed_once() is None
    assert list(spool_source(spool).iterdir()) == []

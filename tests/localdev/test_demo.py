"""``make demo``'s own helpers: the raw/ inventory it polls while Firehose delivers, its background work, and
the shortcut that skips ``airflow db migrate`` when the metadata schema is already at Airflow's head."""

from __future__ import annotations

import gzip
import json

import pytest

from localdev.demo import Background, RawInventory, airflow_schema_head
from tests.moto_s3 import s3_with_bucket

BUCKET = "clickstream-lake"
PART = "raw/events/dt=2026-11-29/hr=01/"


def _gz_lines(*lines: str) -> bytes:
    return gzip.compress("".join(line + "\n" for line in lines).encode())


def _event(event_id: str) -> str:
    return json.dumps({"event_id": event_id, "event_type": "page_view"})


@pytest.fixture
def s3():
    with s3_with_bucket(BUCKET) as client:
        yield client


def test_raw_inventory_counts_objects_records_errors_and_event_ids(s3):
    s3.put_object(Bucket=BUCKET, Key=PART + "a.gz", Body=_gz_lines(_event("e1"), _event("e2")))
    s3.put_object(Bucket=BUCKET, Key=PART + "b.gz", Body=_gz_lines(_event("e3"), "not json"))
    error = json.dumps({"rawData": "eyJ4IjogMX0=", "errorCode": "x"})
    s3.put_object(Bucket=BUCKET, Key="raw/errors/partitioning-failed/2026/c.gz", Body=_gz_lines(error, error))

    raw = RawInventory(s3, BUCKET).refresh()

    assert raw.partitions == {PART: [2, 4]}
    assert raw.ids == {"e1", "e2", "e3"}
    assert raw.errors == {"partitioning-failed": 2}


def test_raw_inventory_reads_each_object_once_across_refreshes(s3):
    reads: list[str] = []
    real_get = s3.get_object

    def counting_get(**kwargs):
        reads.append(kwargs["Key"])
        return real_get(**kwargs)

    s3.get_object = counting_get
    s3.put_object(Bucket=BUCKET, Key=PART + "a.gz", Body=_gz_lines(_event("e1")))
    raw = RawInventory(s3, BUCKET).refresh()
    s3.put_object(Bucket=BUCKET, Key=PART + "b.gz", Body=_gz_lines(_event("e2"), _event("e1")))
    raw.refresh()
    raw.refresh()

    assert reads == [PART + "a.gz", PART + "b.gz"]
    assert raw.partitions == {PART: [2, 3]}
    assert raw.ids == {"e1", "e2"}


def test_background_returns_the_value_or_raises_the_error():
    assert Background("value", lambda: 42).result() == 42
    with pytest.raises(ZeroDivisionError):
        Background("error", lambda: 1 / 0).result()


@pytest.mark.slow
def test_the_schema_head_shortcut_is_alembics_head_of_the_installed_airflow():
    """The demo skips `airflow db migrate` when the DB is at this revision: it must be the migrations' head."""
    from airflow.utils.db import _get_script_object

    assert airflow_schema_head() == _get_script_object().get_current_head()

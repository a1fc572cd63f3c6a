"""clickstream_compaction's ``wait_for_raw_data``: it waits for the buffering the delivery stream is provisioned
with (Settings), not for a param that could say something else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.compaction.params import CompactionParams
from include.compaction.tasks import raw_data_complete_at, raw_data_landed
from include.config import settings
from include.provision.resources import delivery_destination
from localdev.airflow_env import REPO

HOUR_END = datetime(2026, 3, 1, 13, tzinfo=UTC)


@pytest.mark.parametrize("buffer_seconds", [7, 60, 900])
def test_the_wait_adds_the_buffering_interval_firehose_is_provisioned_with(monkeypatch, buffer_seconds):
    monkeypatch.setenv("CLICKSTREAM_FIREHOSE_BUFFER_SECONDS", str(buffer_seconds))
    provisioned = delivery_destination(settings())["BufferingHints"]["IntervalInSeconds"]
    assert provisioned == buffer_seconds
    assert raw_data_complete_at(HOUR_END, {"allowed_lateness_seconds": 300}) == HOUR_END + timedelta(
        seconds=300 + provisioned
    )
    assert raw_data_complete_at(HOUR_END) == HOUR_END + timedelta(
        seconds=CompactionParams().allowed_lateness_seconds + provisioned
    )


def test_the_sensor_passes_once_the_wait_is_over(monkeypatch):
    monkeypatch.setenv("CLICKSTREAM_FIREHOSE_BUFFER_SECONDS", "60")
    params = {"allowed_lateness_seconds": 120}
    ready = HOUR_END + timedelta(seconds=180)
    assert not raw_data_landed(HOUR_END, params, now=ready - timedelta(seconds=1))
    assert raw_data_landed(HOUR_END, params, now=ready)
    assert raw_data_landed(HOUR_END, params, now=ready + timedelta(days=30))  # backfills pass at once


def test_the_buffering_interval_is_no_param_any_more():
    with pytest.raises(ValueError, match="unknown compaction parameter.*'firehose_buffer_seconds'"):
        CompactionParams.from_dict({"firehose_buffer_seconds": 2})


def test_the_dag_runs_it_as_a_reschedule_sensor():
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.bases.sensor import BaseSensorOperator

    bag = DagBag(dag_folder=str(REPO / "dags" / "clickstream_compaction.py"))
    assert bag.import_errors == {}
    sensor = bag.dags["clickstream_compaction"].get_task("wait_for_raw_data")
    assert isinstance(sensor, BaseSensorOperator)
    assert (sensor.mode, sensor.poke_interval, sensor.timeout) == ("reschedule", 60, 6 * 3600)
    assert sensor.downstream_task_ids == {"compact"}

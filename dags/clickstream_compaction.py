"""
### clickstream_compaction

Every hour, turns the Firehose raw objects of one **event hour** (the run's data interval) into one clean,
typed, deduplicated, sorted Parquet dataset: `compacted/events/event_date=…/event_hour=…/`.

1. `wait_for_raw_data` — a reschedule-mode sensor (no busy worker slot) until the wall clock passes
   end of hour + `allowed_lateness_seconds` + the delivery stream's buffering interval (the
   `CLICKSTREAM_FIREHOSE_BUFFER_SECONDS` setting the setup DAG provisions Firehose with). Historical hours pass
   at once, which is how backfills and replays work (`airflow backfill create --dag-id clickstream_compaction …`).
2. `compact` — streams every raw object of the hour, validates each record (malformed ones go to
   `quarantine/…` with the original text and a reason code), removes duplicate `event_id`s, writes Parquet
   through a staging prefix and publishes atomically, manifest last. It emits an asset event on
   `s3://<bucket>/compacted/events` whose extra carries the counts, so the UI shows them.
3. `register_partition` — creates or updates the Glue partition so Athena's `compacted_events` sees the hour.
4. `check_late_data` — compares the raw listing of the previous `late_check_hours` hours with their manifests;
   hours that received objects after compaction are re-compacted (`on_late_data=recompact`) or alerted on
   (`on_late_data=alert`).

A rerun of an hour gives identical rows and the same checksum. The params (defaults, bounds, help) are
`CompactionParams` in `include/compaction/params.py`, the same the code runs with.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, task
from airflow.timetables.interval import CronDataIntervalTimetable

from include.compaction.params import CompactionParams
from include.dag_params import airflow_params
from include.dag_policy import START_DATE, default_args, tags

COMPACTED_EVENTS = Asset("clickstream_compacted_events", uri="s3://clickstream-lake/compacted/events")

with DAG(
    dag_id="clickstream_compaction",
    doc_md=__doc__,
    # The data interval is the previous hour (CronDataIntervalTimetable), not a zero-length "@hourly" run.
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=2,
    render_template_as_native_obj=True,
    default_args=default_args(retries=2),
    tags=tags("batch", 1),
    params=airflow_params(CompactionParams),
):

    @task.sensor(mode="reschedule", poke_interval=timedelta(minutes=1), timeout=timedelta(hours=6))
    def wait_for_raw_data(data_interval_end=None, params=None) -> bool:
        from include.compaction.tasks import raw_data_landed

        return raw_data_landed(data_interval_end, params)

    @task(outlets=[COMPACTED_EVENTS])
    def compact(data_interval_start=None, params=None, outlet_events=None) -> dict:
        from include.compaction.tasks import compact_interval

        result = compact_interval(data_interval_start, params)
        outlet_events[COMPACTED_EVENTS].extra = result
        return result

    @task
    def register_partition(data_interval_start=None) -> str:
        from include.compaction.tasks import register_hour_partition

        return register_hour_partition(data_interval_start)

    @task
    def check_late_data(data_interval_start=None, params=None) -> dict:
        from include.compaction.tasks import handle_late_data

        return handle_late_data(data_interval_start, params)

    compacted = compact()
    wait_for_raw_data() >> compacted >> register_partition() >> check_late_data()

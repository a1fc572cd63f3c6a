"""
### clickstream_flink_watchdog

Every 5 minutes: if the producer DAG is active (it has runs for any of the last 10 minutes) but the Flink sessions application is not
`RUNNING`, publish an alert to the SNS topic (the amazon provider's `SnsNotifier`) and fail the run, so the
gap shows in the grid too. Sessions are only built while the application runs; events keep landing in S3
through Firehose, and the batch recomputation fills the gap.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, task

from include.dag_policy import START_DATE, default_args, tags

with DAG(
    dag_id="clickstream_flink_watchdog",
    doc_md=__doc__,
    schedule=timedelta(minutes=5),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=4),
    # Idempotent read-only check: safe to retry, and one retry avoids alerting on a transient API error.
    default_args=default_args(retries=1),
    tags=tags("quality", 1),
):

    @task
    def check_application(ti=None) -> dict:
        from datetime import UTC, datetime

        from include.watchdog import check_flink_app, producer_is_active

        producer = "clickstream_producer"
        active = producer_is_active(ti, producer, datetime.now(UTC))
        return check_flink_app(producer_active=active, producer_dag_id=producer)

    check_application()

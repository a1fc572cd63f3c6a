"""
### clickstream_setup

Creates, idempotently, everything the pipeline needs in the account behind the `aws_default` connection:

* the data lake bucket (raw, compacted, quarantine, sessions) and the artifacts bucket,
* the Kinesis Data Stream the producer writes to,
* the Firehose delivery stream (Kinesis source → S3 raw, GZIP JSON lines, dynamic partitioning by the
  event hour of `client_timestamp`, failed records under `raw/errors/`),
* the SNS alert topic with an SQS inbox (and e-mail subscriptions from `CLICKSTREAM_ALERT_EMAILS`),
* the Managed Service for Apache Flink application (`FLINK-2_3`, the zip built from `include/flink_app` and
  uploaded to the artifacts bucket, with the Kinesis connector jar from `CLICKSTREAM_KINESIS_CONNECTOR_JAR`,
  property groups for the stream and the S3 sinks, snapshots on),
* the Glue database with the `raw_events` table (partition projection, so Athena needs no crawler), the
  `compacted_events` and `quarantine_events` tables that hourly compaction fills, the `stream_sessions` table
  (projected) over the Flink application's session output, and the authoritative `sessions` table that hourly
  reconciliation publishes (one partition per reconciled hour).

Trigger it manually once per environment; a second run changes nothing (every task logs
`created` / `updated` / `unchanged` per resource, and the `summary` task prints them all). Each task calls one
function of `include/provision/setup.py`; `clickstream_teardown` deletes all of it again.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from include.dag_policy import START_DATE, default_args, tags

with DAG(
    dag_id="clickstream_setup",
    doc_md=__doc__,
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    tags=tags("setup", 1),
):

    @task
    def create_buckets() -> dict[str, str]:
        from include.provision import setup

        return setup.create_buckets()

    @task
    def create_stream() -> dict[str, str]:
        from include.provision import setup

        return setup.create_stream()

    @task
    def create_delivery_stream() -> dict[str, str]:
        from include.provision import setup

        return setup.create_delivery_stream()

    @task
    def create_alerting() -> dict[str, str]:
        from include.provision import setup

        return setup.create_alerting()

    @task
    def create_catalog() -> dict[str, str]:
        from include.provision import setup

        return setup.create_catalog()

    @task
    def publish_flink_code() -> dict:
        from include.provision import setup

        return setup.publish_flink_code()

    @task
    def create_flink_app(code: dict) -> dict[str, str]:
        from include.provision import setup

        return setup.create_flink_app(code)

    @task
    def summary(results: list[dict[str, str]]) -> dict[str, str]:
        from include.provision.summary import summarize

        return summarize(results, "setup")

    buckets = create_buckets()
    stream = create_stream()
    delivery = create_delivery_stream()
    [buckets, stream] >> delivery
    alerting = create_alerting()
    catalog = create_catalog()
    buckets >> catalog
    code = publish_flink_code()
    buckets >> code
    flink_app = create_flink_app(code)
    stream >> flink_app
    summary([buckets, stream, delivery, alerting, catalog, flink_app])

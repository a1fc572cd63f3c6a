"""
### clickstream_setup

Creates, idempotently, everything the pipeline needs in the account behind the `aws_default` connection:

* the data lake bucket (raw, compacted, quarantine, sessions) and the artifacts bucket,
* the Kinesis Data Stream the producer writes to,
* the Firehose delivery stream (Kinesis source → S3 raw, GZIP JSON lines, dynamic partitioning by the
  event hour of `client_timestamp`, failed records under `raw/errors/`),
* the SNS alert topic with an SQS inbox (and e-mail subscriptions from `CLICKSTREAM_ALERT_EMAILS`),
* the Managed Service for Apache Flink application (`FLINK-2_3`, the zip built from `include/flink_app` and
  uploaded to the artifacts bucket, property groups for the stream and the S3 sinks, snapshots on),
* the Glue database with the `raw_events` table (partition projection, so Athena needs no crawler) and the
  `compacted_events` and `quarantine_events` tables that hourly compaction fills.

Trigger it manually once per environment; a second run changes nothing (every task logs
`created` / `updated` / `unchanged` per resource, and the `summary` task prints them all).
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
        from include.aws import client
        from include.config import settings
        from include.provision import ensure_bucket

        s3, cfg = client("s3"), settings()
        region = s3.meta.region_name
        return {
            **ensure_bucket(s3, cfg.bucket, region),
            **ensure_bucket(s3, cfg.artifacts_bucket, region),
        }

    @task
    def create_stream() -> dict[str, str]:
        from include.aws import client
        from include.config import settings
        from include.provision import ensure_stream

        changes, _arn = ensure_stream(client("kinesis"), settings())
        return changes

    @task
    def create_delivery_stream() -> dict[str, str]:
        from include.aws import client
        from include.config import settings
        from include.provision import ensure_delivery_stream

        cfg = settings()
        arn = client("kinesis").describe_stream_summary(StreamName=cfg.stream_name)[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        return ensure_delivery_stream(client("firehose"), cfg, arn)

    @task
    def create_alerting() -> dict[str, str]:
        from include.aws import client
        from include.config import settings
        from include.provision import ensure_alerts

        changes, _arn = ensure_alerts(client("sns"), client("sqs"), settings())
        return changes

    @task
    def create_catalog() -> dict[str, str]:
        from include.aws import client
        from include.config import settings
        from include.provision import catalog_tables, ensure_glue_database, ensure_glue_table

        glue, cfg = client("glue"), settings()
        changes = ensure_glue_database(glue, cfg.glue_database)
        for table_input in catalog_tables(cfg):
            changes.update(ensure_glue_table(glue, cfg.glue_database, table_input))
        return changes

    @task
    def publish_flink_code() -> dict:
        """Build the application zip (deterministic, so an unchanged app keeps its ETag) and upload it."""
        import os
        import tempfile
        from pathlib import Path

        from include.aws import client
        from include.config import settings
        from include.flink_app.package import build, upload

        cfg = settings()
        jar = os.environ.get("CLICKSTREAM_KINESIS_CONNECTOR_JAR")
        with tempfile.TemporaryDirectory() as tmp:
            manifest = build(Path(tmp) / "flink-app.zip", Path(jar) if jar else None)
            uploaded = upload(
                client("s3"), cfg.artifacts_bucket, cfg.flink_code_key, Path(tmp) / "flink-app.zip"
            )
        print(f"uploaded s3://{cfg.artifacts_bucket}/{cfg.flink_code_key} ({manifest['bytes']} bytes)")
        return {"etag": uploaded["etag"], "run_options": manifest["run_options"]}

    @task
    def create_flink_app(code: dict) -> dict[str, str]:
        from include.aws import client
        from include.config import settings
        from include.provision import ensure_flink_application

        cfg = settings()
        arn = client("kinesis").describe_stream_summary(StreamName=cfg.stream_name)[
            "StreamDescriptionSummary"
        ]["StreamARN"]
        return ensure_flink_application(
            client("kinesisanalyticsv2"), cfg, arn, code_etag=code["etag"], run_options=code["run_options"]
        )

    @task
    def summary(results: list[dict[str, str]]) -> dict[str, str]:
        merged: dict[str, str] = {}
        for result in results:
            merged.update(result)
        width = max(map(len, merged), default=0)
        for resource, change in sorted(merged.items()):
            print(f"{resource:<{width}}  {change}")
        counts = {c: list(merged.values()).count(c) for c in ("created", "updated", "unchanged")}
        print(f"setup: {counts}")
        return merged

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

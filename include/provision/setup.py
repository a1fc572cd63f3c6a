"""What the ``clickstream_setup`` DAG's tasks do, with Airflow-free signatures so tests and scripts can call
them: each creates or updates one kind of resource in the account behind the ``aws_default`` connection and
returns ``{resource: "created" | "updated" | "unchanged"}``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from include.aws import client
from include.config import settings
from include.provision.resources import (
    Changes,
    catalog_tables,
    ensure_alerts,
    ensure_bucket,
    ensure_delivery_stream,
    ensure_flink_application,
    ensure_glue_database,
    ensure_glue_table,
    ensure_stream,
    stream_arn,
)

log = logging.getLogger(__name__)


def create_buckets() -> Changes:
    """The data lake bucket (raw, compacted, quarantine, streaming sinks) and the artifacts bucket."""
    s3, cfg = client("s3"), settings()
    region = s3.meta.region_name
    return {**ensure_bucket(s3, cfg.bucket, region), **ensure_bucket(s3, cfg.artifacts_bucket, region)}


def create_stream() -> Changes:
    changes, _arn = ensure_stream(client("kinesis"), settings())
    return changes


def create_delivery_stream() -> Changes:
    """Firehose from the Kinesis stream to the lake's raw prefix (the stream must exist: run after it)."""
    cfg = settings()
    return ensure_delivery_stream(client("firehose"), cfg, stream_arn(client("kinesis"), cfg.stream_name))


def create_alerting() -> Changes:
    changes, _arn = ensure_alerts(client("sns"), client("sqs"), settings())
    return changes


def create_catalog() -> Changes:
    """The Glue database and its tables: raw, compacted and quarantine events, sessions and stream_sessions."""
    glue, cfg = client("glue"), settings()
    changes = ensure_glue_database(glue, cfg.glue_database)
    for table_input in catalog_tables(cfg):
        changes.update(ensure_glue_table(glue, cfg.glue_database, table_input))
    return changes


def publish_flink_code() -> dict[str, Any]:
    """Build the application zip (deterministic, so an unchanged app keeps its ETag) and upload it.

    Returns the ETag and the run options that :func:`create_flink_app` puts into the application.
    """
    from include.flink_app.package import build, upload

    cfg = settings()
    jar = Path(cfg.kinesis_connector_jar) if cfg.kinesis_connector_jar else None
    # Prebuilt on AWS (workers have no JDK); unset, the format jar is compiled here (local).
    format_jar = Path(cfg.flink_format_jar) if cfg.flink_format_jar else None
    with tempfile.TemporaryDirectory() as tmp:
        zip_path = Path(tmp) / "flink-app.zip"
        manifest = build(zip_path, jar, format_jar)
        uploaded = upload(client("s3"), cfg.artifacts_bucket, cfg.flink_code_key, zip_path)
    log.info("uploaded s3://%s/%s (%s bytes)", cfg.artifacts_bucket, cfg.flink_code_key, manifest["bytes"])
    return {"etag": uploaded["etag"], "run_options": manifest["run_options"]}


def create_flink_app(code: dict[str, Any]) -> Changes:
    """The Managed Flink application, pointing at the code :func:`publish_flink_code` uploaded."""
    cfg = settings()
    return ensure_flink_application(
        client("kinesisanalyticsv2"),
        cfg,
        stream_arn(client("kinesis"), cfg.stream_name),
        code_etag=code["etag"],
        run_options=code["run_options"],
    )

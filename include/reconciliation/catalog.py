"""The session tables of the Glue catalog: ``sessions`` (authoritative) and ``stream_sessions`` (fresh).

``sessions`` holds the batch sessions of every reconciled hour, one partition per hour (``dt``, ``hr``) at
``batch/sessions/dt=…/hr=…/``, the stream's session columns. A partition is registered only by the
reconciliation, after the hour's files and report are published, so Athena lists only reconciled hours. Each
partition's parameters carry the hour's reconciliation status (``reconciliation_status``: passed, failed,
batch_only, repaired), its counts and the report's location.

``stream_sessions`` reads the Flink job's session sink as it is written (JSON lines under
``streaming/sessions/dt=…/hr=…/``, same columns and partitions); nothing registers its partitions, so they are
projected like ``raw_events``. The query that serves fresh stream sessions for the last hours and reconciled
batch sessions before is in ``docs/reconciliation.md``.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from include.compaction.catalog import hour_projection
from include.compaction.layout import normalize_hour

SESSIONS_TABLE = "sessions"
STREAM_SESSIONS_TABLE = "stream_sessions"
#: The Flink job's session sink under ``Settings.streaming_prefix`` (``include.flink_app.flink_job.SINK_DIRS``).
STREAM_SESSIONS_DIR = "sessions"

SESSION_COLUMNS = [
    {"Name": "session_id", "Type": "string", "Comment": "hash of user_id, device_id and session_start"},
    {"Name": "user_id", "Type": "int"},
    {"Name": "device_id", "Type": "string"},
    {"Name": "session_start", "Type": "string", "Comment": "UTC, ISO-8601 with milliseconds"},
    {"Name": "last_event_at", "Type": "string", "Comment": "UTC, ISO-8601 with milliseconds"},
    {"Name": "session_end", "Type": "string", "Comment": "last_event_at + the inactivity gap"},
    {"Name": "duration_ms", "Type": "bigint"},
    {"Name": "event_count", "Type": "bigint"},
    {"Name": "first_event", "Type": "string"},
    {"Name": "last_event", "Type": "string"},
    {"Name": "countrycode", "Type": "string"},
]
PARTITION_KEYS = [
    {"Name": "dt", "Type": "string", "Comment": "UTC date of session_start, YYYY-MM-DD"},
    {"Name": "hr", "Type": "string", "Comment": "UTC hour of session_start, HH"},
]
_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}

#: Flink's filesystem sink with ``'format' = 'json'``: text files of one JSON object per line; Athena skips
#: its in-progress (``.part-…``) and marker (``_SUCCESS``) files.
_JSON_TEXT = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
        "Parameters": {"case.insensitive": "false"},
    },
}


def sessions_table_input(bucket: str, prefix: str, *, name: str = SESSIONS_TABLE) -> dict:
    """Glue TableInput of the reconciled batch sessions (Parquet, zstd), partitioned by dt/hr."""
    if not bucket:
        raise ValueError(f"bucket must be a non-empty S3 bucket name, got {bucket!r}")
    return {
        "Name": name,
        "Description": "Authoritative sessions: the batch sessions of every reconciled hour, partition "
        "parameter reconciliation_status = passed | failed | batch_only | repaired",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "EXTERNAL": "TRUE",
            "projection.enabled": "false",
            "classification": "parquet",
            "parquet.compression": "ZSTD",
        },
        "PartitionKeys": [dict(k) for k in PARTITION_KEYS],
        "StorageDescriptor": {
            "Columns": [dict(c) for c in SESSION_COLUMNS],
            "Location": f"s3://{bucket}/{prefix.strip('/')}/",
            "Compressed": True,
            "StoredAsSubDirectories": False,
            **_PARQUET,
        },
    }


def stream_sessions_table_input(
    bucket: str, streaming_prefix: str, *, name: str = STREAM_SESSIONS_TABLE
) -> dict:
    """Glue TableInput over the stream's session rows (Flink's ``json`` format, one object per line,
    uncompressed), partitions projected from ``dt``/``hr`` (the session-start hour, as Flink partitions them)."""
    if not bucket:
        raise ValueError(f"bucket must be a non-empty S3 bucket name, got {bucket!r}")
    location = f"s3://{bucket}/{streaming_prefix.strip('/')}/{STREAM_SESSIONS_DIR}/"
    projection = hour_projection(location, "dt", "hr")
    return {
        "Name": name,
        "Description": "Streamed 1-minute-gap sessions as the Flink job writes them (fresh, not reconciled); "
        "partitioned by the session-start hour",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "classification": "json", **projection},
        "PartitionKeys": [dict(k) for k in PARTITION_KEYS],
        "StorageDescriptor": {
            "Columns": [dict(c) for c in SESSION_COLUMNS],
            "Location": location,
            "Compressed": False,
            "StoredAsSubDirectories": False,
            **_JSON_TEXT,
        },
    }


def partition_parameters(report: dict[str, Any], report_url: str) -> dict[str, str]:
    """What a partition says about its hour: status, counts, match rate, report location (strings, Glue's type)."""
    params = {
        "reconciliation_status": str(report["status"]),
        "reconciliation_counts": json.dumps(report["counts"], sort_keys=True),
        "reconciliation_match_rate": str(report["totals"]["match_rate"]),
        "reconciliation_report": report_url,
    }
    if report.get("repair"):
        params["reconciliation_repaired_by_batch"] = str(report["repair"]["repaired_by_batch"])
        params["reconciliation_previous_status"] = str(report["repair"]["previous_status"])
    return params


def ensure_sessions_partition(
    glue_client: Any,
    database: str,
    hour_start: datetime,
    parameters: dict[str, str],
    *,
    table: str = SESSIONS_TABLE,
) -> str:
    """Create or update hour's partition with ``parameters``; returns "created", "updated" or "unchanged"."""
    hour = normalize_hour(hour_start, "hour_start")
    values = [hour.strftime("%Y-%m-%d"), hour.strftime("%H")]
    table_def = glue_client.get_table(DatabaseName=database, Name=table)["Table"]
    sd = dict(table_def["StorageDescriptor"])
    sd["Location"] = f"{sd['Location'].rstrip('/')}/dt={values[0]}/hr={values[1]}/"
    partition_input = {"Values": values, "StorageDescriptor": sd, "Parameters": dict(parameters)}
    try:
        existing = glue_client.get_partition(DatabaseName=database, TableName=table, PartitionValues=values)[
            "Partition"
        ]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
            raise
        glue_client.create_partition(DatabaseName=database, TableName=table, PartitionInput=partition_input)
        return "created"
    same_storage = all(
        existing.get("StorageDescriptor", {}).get(k) == sd.get(k)
        for k in ("Location", "Columns", "InputFormat", "OutputFormat", "SerdeInfo")
    )
    if same_storage and existing.get("Parameters", {}) == parameters:
        return "unchanged"
    glue_client.update_partition(
        DatabaseName=database, TableName=table, PartitionValueList=values, PartitionInput=partition_input
    )
    return "updated"

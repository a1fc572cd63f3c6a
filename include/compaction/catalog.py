"""Glue Data Catalog definitions for the raw, compacted and quarantine tables, and hourly partition upkeep.

Partition projection stays off: compaction registers each hour explicitly with :func:`ensure_partition` after
the manifest is written, so Athena only ever lists hours that are complete.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from include.compaction import layout
from include.config import Settings

COMPACTED_TABLE = "compacted_events"
RAW_TABLE = "raw_events"
QUARANTINE_TABLE = "quarantine_events"

PARTITION_KEYS = [
    {"Name": "event_date", "Type": "string", "Comment": "UTC date of client_timestamp, YYYY-MM-DD"},
    {"Name": "event_hour", "Type": "string", "Comment": "UTC hour of client_timestamp, HH"},
]

#: Athena types of the compacted Parquet columns (see compactor.EVENTS_SCHEMA).
COMPACTED_COLUMNS = [
    {"Name": "event_id", "Type": "string", "Comment": "UUID, unique within the hour"},
    {"Name": "user_id", "Type": "int"},
    {"Name": "device_id", "Type": "string"},
    {"Name": "client_event", "Type": "string"},
    {"Name": "client_timestamp", "Type": "timestamp", "Comment": "UTC, millisecond precision"},
    {"Name": "countrycode", "Type": "string", "Comment": "ISO 3166-1 alpha-2"},
]

#: The raw JSON is read as strings: a wrongly typed field must not fail a whole Athena query.
RAW_COLUMNS = [{"Name": c["Name"], "Type": "string"} for c in COMPACTED_COLUMNS]

QUARANTINE_COLUMNS = [
    {"Name": "reason", "Type": "string"},
    {"Name": "cause", "Type": "string", "Comment": "finer reason of firehose_partitioning_failed records"},
    {"Name": "detail", "Type": "string"},
    {"Name": "source_key", "Type": "string"},
    {"Name": "line", "Type": "bigint"},
    {"Name": "raw", "Type": "string"},
    {"Name": "raw_encoding", "Type": "string", "Comment": "utf-8, or base64 for invalid UTF-8"},
    {"Name": "error_code", "Type": "string"},
    {"Name": "error_message", "Type": "string"},
    {"Name": "arrival_timestamp", "Type": "bigint"},
    {"Name": "attempts_made", "Type": "int"},
]

_PARQUET = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {
        "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        "Parameters": {"serialization.format": "1"},
    },
}
_JSON_TEXT = {
    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
}


def _location(bucket: str, prefix: str) -> str:
    if not bucket:
        raise ValueError(f"bucket must be a non-empty S3 bucket name, got {bucket!r}")
    path = prefix.strip("/")
    return f"s3://{bucket}/{path}/" if path else f"s3://{bucket}/"


def hour_projection(location: str, date_key: str, hour_key: str) -> dict[str, str]:
    """Athena partition projection for a table partitioned by a UTC date and an hour (``HH``) under ``location``.

    For tables whose partitions nobody registers (Firehose and the Flink sinks create them as they write).
    """
    return {
        "projection.enabled": "true",
        f"projection.{date_key}.type": "date",
        f"projection.{date_key}.format": "yyyy-MM-dd",
        f"projection.{date_key}.range": "2020-01-01,NOW",
        f"projection.{date_key}.interval": "1",
        f"projection.{date_key}.interval.unit": "DAYS",
        f"projection.{hour_key}.type": "integer",
        f"projection.{hour_key}.range": "0,23",
        f"projection.{hour_key}.digits": "2",
        "storage.location.template": location + f"{date_key}=${{{date_key}}}/{hour_key}=${{{hour_key}}}/",
    }


def _table_input(
    name: str, location: str, columns: list[dict], storage: dict, params: dict, comment: str
) -> dict:
    return {
        "Name": name,
        "Description": comment,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", "projection.enabled": "false", **params},
        "PartitionKeys": [dict(k) for k in PARTITION_KEYS],
        "StorageDescriptor": {
            "Columns": [dict(c) for c in columns],
            "Location": location,
            "Compressed": True,
            "StoredAsSubDirectories": False,
            **storage,
        },
    }


def compacted_events_table_input(
    bucket: str, prefix: str | None = None, *, name: str = COMPACTED_TABLE
) -> dict:
    """Glue TableInput of the hourly compacted Parquet (zstd) table, partitioned by event_date/event_hour."""
    prefix = Settings().compacted_prefix if prefix is None else prefix
    return _table_input(
        name,
        _location(bucket, prefix),
        COMPACTED_COLUMNS,
        _PARQUET,
        {"classification": "parquet", "parquet.compression": "ZSTD"},
        "Deduplicated, validated clickstream events, one Parquet file per event hour, sorted by "
        "user_id, device_id, client_timestamp, event_id",
    )


def raw_events_table_input(bucket: str, prefix: str | None = None, *, name: str = RAW_TABLE) -> dict:
    """Glue TableInput over Firehose's raw GZIP JSON lines (OpenX JSON SerDe, all columns strings)."""
    prefix = Settings().raw_prefix if prefix is None else prefix
    storage = {
        **_JSON_TEXT,
        "SerdeInfo": {
            "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
            "Parameters": {"ignore.malformed.json": "true", "case.insensitive": "false"},
        },
    }
    location = _location(bucket, prefix)
    # Nothing registers raw partitions (Firehose creates them as it writes), so Athena projects them.
    projection = hour_projection(location, "event_date", "event_hour")
    return _table_input(
        name,
        location,
        RAW_COLUMNS,
        storage,
        {"classification": "json", "compressionType": "gzip", **projection},
        "Raw clickstream records as delivered by Firehose, partitioned by the event hour of client_timestamp",
    )


def quarantine_table_input(bucket: str, prefix: str | None = None, *, name: str = QUARANTINE_TABLE) -> dict:
    """Glue TableInput over the quarantine JSON lines written by compaction."""
    prefix = Settings().quarantine_prefix if prefix is None else prefix
    storage = {
        **_JSON_TEXT,
        "SerdeInfo": {
            "SerializationLibrary": "org.openx.data.jsonserde.JsonSerDe",
            "Parameters": {"case.insensitive": "false"},
        },
    }
    return _table_input(
        name,
        _location(bucket, prefix),
        QUARANTINE_COLUMNS,
        storage,
        {"classification": "json", "compressionType": "gzip"},
        "Records refused by hourly compaction, with reason, detail and the original text",
    )


def ensure_partition(
    glue_client: Any,
    database: str,
    table: str,
    bucket: str,
    hour_start: datetime,
    *,
    prefix: str | None = None,
) -> str:
    """Create or update the (event_date, event_hour) partition; returns "created", "updated" or "unchanged".

    The partition's storage descriptor is the table's (columns, formats, SerDe) with the hour's location, so
    it follows schema changes made on the table when the hour is recompacted. ``prefix`` defaults to the
    table's own location within ``bucket``.
    """
    table_def = glue_client.get_table(DatabaseName=database, Name=table)["Table"]
    sd = dict(table_def["StorageDescriptor"])
    if prefix is None:
        table_location = sd.get("Location", "")
        expected = f"s3://{bucket}/"
        if not table_location.startswith(expected):
            raise ValueError(
                f"table {database}.{table} is located at {table_location!r}, not in bucket {bucket!r}; "
                "pass prefix"
            )
        prefix = table_location[len(expected) :]
    event_date, event_hour = layout.hour_partition(hour_start)
    sd["Location"] = f"{_location(bucket, prefix)}event_date={event_date}/event_hour={event_hour}/"
    partition_input = {"Values": [event_date, event_hour], "StorageDescriptor": sd}
    try:
        existing = glue_client.get_partition(
            DatabaseName=database, TableName=table, PartitionValues=[event_date, event_hour]
        )["Partition"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
            raise
        try:
            glue_client.create_partition(
                DatabaseName=database, TableName=table, PartitionInput=partition_input
            )
            return "created"
        except ClientError as create_exc:  # created concurrently: fall through to the update
            if create_exc.response.get("Error", {}).get("Code") != "AlreadyExistsException":
                raise
            existing = None
    if existing is not None and _same_storage(existing.get("StorageDescriptor", {}), sd):
        return "unchanged"
    glue_client.update_partition(
        DatabaseName=database,
        TableName=table,
        PartitionValueList=[event_date, event_hour],
        PartitionInput=partition_input,
    )
    return "updated"


def _same_storage(current: dict, wanted: dict) -> bool:
    keys = ("Location", "Columns", "InputFormat", "OutputFormat", "SerdeInfo")
    return all(current.get(k) == wanted.get(k) for k in keys)

"""Glue table inputs are accepted by the Glue API and partitions are created, left alone or updated."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from include.compaction import catalog

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
DB = "clickstream"


@pytest.fixture
def glue():
    with mock_aws():
        client = boto3.client("glue", region_name="us-east-1")
        client.create_database(DatabaseInput={"Name": DB})
        yield client


def test_compacted_table_input_shape():
    table = catalog.compacted_events_table_input("clickstream-lake", "compacted/events/")
    sd = table["StorageDescriptor"]
    assert table["Name"] == "compacted_events" and table["TableType"] == "EXTERNAL_TABLE"
    assert sd["Location"] == "s3://clickstream-lake/compacted/events/"
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        ("event_id", "string"),
        ("user_id", "int"),
        ("device_id", "string"),
        ("client_event", "string"),
        ("client_timestamp", "timestamp"),
        ("countrycode", "string"),
    ]
    assert [(k["Name"], k["Type"]) for k in table["PartitionKeys"]] == [
        ("event_date", "string"),
        ("event_hour", "string"),
    ]
    assert (
        sd["SerdeInfo"]["SerializationLibrary"]
        == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    )
    assert table["Parameters"]["projection.enabled"] == "false"
    assert table["Parameters"]["classification"] == "parquet"


def test_raw_and_quarantine_tables_use_the_json_serde():
    raw = catalog.raw_events_table_input("clickstream-lake")
    assert raw["StorageDescriptor"]["Location"] == "s3://clickstream-lake/raw/events/"
    assert (
        raw["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    )
    assert {c["Type"] for c in raw["StorageDescriptor"]["Columns"]} == {"string"}
    quarantine = catalog.quarantine_table_input("clickstream-lake")
    assert quarantine["StorageDescriptor"]["Location"] == "s3://clickstream-lake/quarantine/events/"
    assert "reason" in [c["Name"] for c in quarantine["StorageDescriptor"]["Columns"]]


def test_bucket_is_required():
    with pytest.raises(ValueError, match="bucket must be a non-empty"):
        catalog.compacted_events_table_input("", "compacted/events/")


def test_tables_are_accepted_by_glue(glue):
    for table_input in (
        catalog.compacted_events_table_input("clickstream-lake"),
        catalog.raw_events_table_input("clickstream-lake"),
        catalog.quarantine_table_input("clickstream-lake"),
    ):
        glue.create_table(DatabaseName=DB, TableInput=table_input)
    names = {t["Name"] for t in glue.get_tables(DatabaseName=DB)["TableList"]}
    assert names == {"compacted_events", "raw_events", "quarantine_events"}


def test_ensure_partition_is_idempotent_and_follows_the_table(glue):
    glue.create_table(DatabaseName=DB, TableInput=catalog.compacted_events_table_input("clickstream-lake"))
    args = (glue, DB, "compacted_events", "clickstream-lake", HOUR)
    assert catalog.ensure_partition(*args) == "created"
    part = glue.get_partition(
        DatabaseName=DB, TableName="compacted_events", PartitionValues=["2026-11-27", "10"]
    )
    sd = part["Partition"]["StorageDescriptor"]
    assert sd["Location"] == "s3://clickstream-lake/compacted/events/event_date=2026-11-27/event_hour=10/"
    assert [c["Name"] for c in sd["Columns"]][0] == "event_id"
    assert catalog.ensure_partition(*args) == "unchanged"

    changed = catalog.compacted_events_table_input("clickstream-lake")
    changed["StorageDescriptor"]["Columns"].append({"Name": "session_hint", "Type": "string"})
    glue.update_table(DatabaseName=DB, TableInput=changed)
    assert catalog.ensure_partition(*args) == "updated"
    part = glue.get_partition(
        DatabaseName=DB, TableName="compacted_events", PartitionValues=["2026-11-27", "10"]
    )
    assert part["Partition"]["StorageDescriptor"]["Columns"][-1]["Name"] == "session_hint"
    partitions = glue.get_partitions(DatabaseName=DB, TableName="compacted_events")["Partitions"]
    assert len(partitions) == 1


def test_ensure_partition_refuses_a_table_in_another_bucket(glue):
    glue.create_table(DatabaseName=DB, TableInput=catalog.compacted_events_table_input("other-bucket"))
    with pytest.raises(ValueError, match="not in bucket 'clickstream-lake'"):
        catalog.ensure_partition(glue, DB, "compacted_events", "clickstream-lake", HOUR)
    assert (
        catalog.ensure_partition(glue, DB, "compacted_events", "clickstream-lake", HOUR, prefix="x/")
        == "created"
    )

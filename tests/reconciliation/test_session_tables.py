"""The two session tables of the Glue catalog cannot drift from what writes them or from the documented query:
``stream_sessions`` against the Flink job's session sink (its DDL rendered from the setup's property groups),
``sessions`` against the same columns, and the query of docs/reconciliation.md against both tables.

A file the Flink job really wrote is checked against the table in tests/integration/test_reconciliation_pipeline.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from include.config import Settings
from include.flink_app.flink_job import job_from_properties
from include.provision.resources import (
    _property_map,
    catalog_tables,
    ensure_glue_database,
    ensure_glue_table,
    flink_property_groups,
)
from include.provision.teardown import delete_glue_catalog
from include.reconciliation import layout
from include.reconciliation.catalog import (
    SESSIONS_TABLE,
    STREAM_SESSIONS_TABLE,
    sessions_table_input,
    stream_sessions_table_input,
)
from include.sessions.contract import SESSION_FIELDS

CFG = Settings()
STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/clickstream-events"
#: Flink SQL types of the sink -> Hive/Athena types of the table.
FLINK_TO_HIVE = {"STRING": "string", "INT": "int", "BIGINT": "bigint"}
DOC = Path(__file__).resolve().parents[2] / "docs" / "reconciliation.md"


def _sessions_sink_ddl() -> str:
    """CREATE TABLE sessions_sink of the job the setup DAG configures (its property groups, default contract)."""
    groups = _property_map(flink_property_groups(CFG, STREAM_ARN, "us-east-1"))
    job = job_from_properties(groups)
    (ddl,) = [s for s in job.ddl if re.match(r"\s*CREATE TABLE sessions_sink\b", s)]
    return ddl


def _flink_columns(ddl: str) -> tuple[list[tuple[str, str]], list[str], dict[str, str]]:
    """(columns, partition columns, WITH options) of a rendered CREATE TABLE."""
    body = re.search(r"CREATE TABLE \w+ \((.*?)\)\s*PARTITIONED BY \(([^)]*)\)\s*WITH \((.*)\)", ddl, re.S)
    assert body, ddl
    columns = [tuple(line.strip().rstrip(",").split()) for line in body.group(1).strip().splitlines()]
    partitions = [p.strip() for p in body.group(2).split(",")]
    options = dict(re.findall(r"'([^']+)'\s*=\s*'([^']*)'", body.group(3)))
    return columns, partitions, options


def _names(table_input: dict) -> list[str]:
    return [c["Name"] for c in table_input["StorageDescriptor"]["Columns"]]


def test_stream_sessions_reads_what_the_flink_session_sink_writes():
    columns, partitions, options = _flink_columns(_sessions_sink_ddl())
    table = stream_sessions_table_input(CFG.bucket, CFG.streaming_prefix)
    sd = table["StorageDescriptor"]
    file_columns = [(name, typ) for name, typ in columns if name not in partitions]
    assert [(c["Name"], c["Type"]) for c in sd["Columns"]] == [
        (name, FLINK_TO_HIVE[typ]) for name, typ in file_columns
    ]
    assert [k["Name"] for k in table["PartitionKeys"]] == partitions == ["dt", "hr"]
    # Flink's filesystem sink leaves the partition columns out of the files; the path holds them.
    assert sd["Location"] == options["path"] + "/"
    assert options["format"] == "json"
    assert sd["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    assert sd["InputFormat"] == "org.apache.hadoop.mapred.TextInputFormat" and sd["Compressed"] is False


def test_stream_sessions_projects_the_partitions_the_reconciliation_reads():
    params = stream_sessions_table_input(CFG.bucket, CFG.streaming_prefix)["Parameters"]
    assert params["projection.enabled"] == "true"
    hour = datetime(2026, 11, 27, 7, tzinfo=UTC)
    projected = params["storage.location.template"].replace("${dt}", "2026-11-27").replace("${hr}", "07")
    assert projected == f"s3://{CFG.bucket}/{layout.stream_prefix(CFG, layout.STREAM_SESSIONS, hour)}"
    assert params["projection.hr.range"] == "0,23" and params["projection.hr.digits"] == "2"
    assert params["projection.dt.format"] == "yyyy-MM-dd"


def test_both_session_tables_have_the_stream_session_columns():
    batch = sessions_table_input(CFG.bucket, CFG.batch_sessions_prefix)
    stream = stream_sessions_table_input(CFG.bucket, CFG.streaming_prefix)
    assert _names(batch) == _names(stream) == list(SESSION_FIELDS)
    assert batch["StorageDescriptor"]["Columns"] == stream["StorageDescriptor"]["Columns"]
    assert batch["PartitionKeys"] == stream["PartitionKeys"]
    with pytest.raises(ValueError, match="bucket must be a non-empty S3 bucket name, got ''"):
        stream_sessions_table_input("", CFG.streaming_prefix)


@mock_aws
def test_setup_creates_stream_sessions_and_teardown_deletes_it():
    glue = boto3.client("glue", region_name="us-east-1")
    ensure_glue_database(glue, CFG.glue_database)
    created = {}
    for table_input in catalog_tables(CFG):
        created.update(ensure_glue_table(glue, CFG.glue_database, table_input))
    key = f"glue:{CFG.glue_database}.{STREAM_SESSIONS_TABLE}"
    assert created[key] == "created"
    table = glue.get_table(DatabaseName=CFG.glue_database, Name=STREAM_SESSIONS_TABLE)["Table"]
    assert table["Parameters"]["projection.enabled"] == "true"
    again = ensure_glue_table(
        glue, CFG.glue_database, stream_sessions_table_input(CFG.bucket, CFG.streaming_prefix)
    )
    assert again == {key: "unchanged"}
    names = [t["Name"] for t in catalog_tables(CFG)]
    deleted = delete_glue_catalog(glue, CFG.glue_database, names)
    assert deleted[key] == "deleted"
    assert glue.get_databases()["DatabaseList"] == []


def _doc_query() -> str:
    text = DOC.read_text()
    section = text.split("### Fresh stream sessions for the last hours, reconciled batch sessions before", 1)
    assert len(section) == 2, f"{DOC}: the section of the fresh + reconciled query is missing"
    match = re.search(r"```sql\n(.*?)```", section[1], re.S)
    assert match, f"{DOC}: no ```sql block in the fresh + reconciled section"
    return match.group(1)


def _select_list(select: str) -> list[str]:
    columns = re.search(r"SELECT\s+(.*?)\s+FROM\s", select, re.S | re.I)
    assert columns, select
    return [c.strip() for c in columns.group(1).split(",")]


def test_the_documented_query_selects_the_same_columns_from_both_tables():
    query = _doc_query()
    database = CFG.glue_database
    tables = set(re.findall(rf'"{database}"\."([\w$]+)"', query))
    assert tables == {SESSIONS_TABLE, f"{SESSIONS_TABLE}$partitions", STREAM_SESSIONS_TABLE}
    batch_part, stream_part = query.split("UNION ALL")
    batch_part = batch_part[batch_part.index(f'FROM "{database}"."sessions$partitions"') :]
    batch_list = _select_list(batch_part[batch_part.index("SELECT") :])
    stream_list = _select_list(stream_part)
    assert batch_list == ["s.*", "'batch' AS source"], batch_list
    assert stream_list[-1] == "'stream' AS source"
    by_name = {t["Name"]: t for t in catalog_tables(CFG)}
    # s.* of the batch side is its columns and then its partition keys (Athena's order)
    batch_columns = _names(by_name[SESSIONS_TABLE]) + [
        k["Name"] for k in by_name[SESSIONS_TABLE]["PartitionKeys"]
    ]
    stream_table = by_name[STREAM_SESSIONS_TABLE]
    stream_columns = _names(stream_table) + [k["Name"] for k in stream_table["PartitionKeys"]]
    assert [c.removeprefix("t.") for c in stream_list[:-1]] == stream_columns == batch_columns

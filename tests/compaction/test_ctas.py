"""The Athena CTAS variant renders with validated values, and refuses values that would break the SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.compaction.ctas import render_compaction_ctas
from tests.trino_sql import trino_problems

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
ARGS = {
    "database": "clickstream",
    "raw_table": "raw_events",
    "ctas_table": "compaction_20261127_10",
    "external_location": "s3://clickstream-lake/compacted/_staging/ctas-20261127T10/",
    "hour_start": HOUR,
    "now": NOW,
}


def test_renders_the_hour_and_the_contract():
    sql = render_compaction_ctas(**ARGS)
    assert sql.startswith('CREATE TABLE "clickstream"."compaction_20261127_10"')
    assert "external_location = 's3://clickstream-lake/compacted/_staging/ctas-20261127T10/'" in sql
    assert "event_date = '2026-11-27'" in sql and "event_hour = '10'" in sql
    assert "client_timestamp >= TIMESTAMP '2026-11-27 10:00:00.000'" in sql
    assert "client_timestamp < TIMESTAMP '2026-11-27 11:00:00.000'" in sql
    assert "client_timestamp <= TIMESTAMP '2026-11-27 10:35:00.000'" in sql  # now + 5 min skew
    assert "device_id IN ('computer', 'mobile', 'tablet')" in sql
    assert "'DE'" in sql and "'ZW'" in sql
    assert "user_id BETWEEN 1 AND 2147483647" in sql
    assert "length(client_event) <= 64" in sql
    assert "PARTITION BY event_id" in sql
    assert "ORDER BY user_id, device_id, client_timestamp, event_id" in sql
    assert "{{" not in sql and "{#" not in sql
    assert trino_problems(sql) == []


def test_skew_is_configurable():
    sql = render_compaction_ctas(**{**ARGS, "max_future_skew": timedelta(0)})
    assert "client_timestamp <= TIMESTAMP '2026-11-27 10:30:00.000'" in sql


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("database", 'x"; DROP TABLE y; --', "database must be a lower-case"),
        ("raw_table", "Raw-Events", "raw_table must be a lower-case"),
        ("ctas_table", "", "ctas_table must be a lower-case"),
        ("external_location", "s3://clickstream-lake/x", "ending with '/'"),
        ("external_location", "s3://clickstream-lake/x'y/", "no quotes"),
        ("hour_start", HOUR + timedelta(minutes=5), "start of an hour"),
        ("now", datetime(2026, 11, 27, 10), "now must be a timezone-aware"),
    ],
)
def test_rejects_unsafe_or_wrong_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        render_compaction_ctas(**{**ARGS, field: value})

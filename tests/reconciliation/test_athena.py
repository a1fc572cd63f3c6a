"""The Athena (Trino) renders of the hour's batch sessions and the reconciliation: the same templates as the
DuckDB path (which the other tests run), validated values, Trino spellings only. Not run on an engine here."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from include.reconciliation import athena
from include.reconciliation.options import ReconcileOptions
from include.sessions.templates import render
from tests.reconciliation.helpers import CONTRACT, H
from tests.trino_sql import trino_problems

NOW = H + timedelta(days=1)
DUCKDB_ONLY = (
    "epoch_ms(",
    "strftime(",
    "strptime(",
    "regexp_matches(",
    "string_agg(",
    "json_extract_string(",
    "make_timestamp(",
    "json_valid(",
    "QUALIFY",
    "::",
    "MATERIALIZED",
    "rowid",
)


def sessions_sql(**overrides):
    values = dict(
        database="clickstream",
        events_table="compacted_events",
        ctas_table="batch_sessions_2026112710",
        external_location="s3://lake/batch/_staging/run-1/",
        hour=H,
        now=NOW,
    )
    values.update(overrides)
    return athena.render_hour_sessions_ctas(**values)


def reconcile_sql(**overrides):
    values = dict(
        database="clickstream",
        events_table="compacted_events",
        stream_sessions_table="stream_sessions",
        stream_late_table="stream_late_events",
        stream_rejected_table="stream_rejected_events",
        quarantine_accepted_table="quarantine_accepted_2026112710",
        raw_copies_table="raw_copies_2026112710",
        ctas_table="reconciled_2026112710",
        external_location="s3://lake/reports/_staging/run-1/",
        hour=H,
        ledger_until=H + timedelta(hours=3),
        now=NOW,
    )
    values.update(overrides)
    return athena.render_reconcile_ctas(**values)


@pytest.mark.parametrize("render_ctas", [sessions_sql, reconcile_sql])
def test_renders_trino_ctas(render_ctas):
    sql = render_ctas()
    assert sql.startswith('CREATE TABLE "clickstream".')
    assert "format = 'PARQUET'" in sql and "external_location = 's3://lake/" in sql
    for token in DUCKDB_ONLY:
        assert token not in sql, token
    assert trino_problems(sql) == []
    # partition pruning: the compacted hours H - gap ... H + 1 h + L, nothing else
    assert re.findall(r"event_hour = '(\d\d)'", sql) == ["09", "10", "11"]
    assert "date_diff('millisecond'" in sql and "lower(to_hex(md5(to_utf8(" in sql


def test_reconcile_render_reads_the_stream_partitions_and_ledgers():
    sql = reconcile_sql()
    sessions = re.search(r'"stream_sessions" WHERE ([^\n]*)', sql).group(1)
    assert re.findall(r"hr = '(\d\d)'", sessions) == ["08", "09", "10", "11"]
    late = re.search(r'"stream_late_events" WHERE ([^\n]*)', sql).group(1)
    assert re.findall(r"hr = '(\d\d)'", late) == ["09", "10", "11", "12", "13"]
    for cause in ("'late'", "'duplicate'", "'rule_difference'", "'missing_in_stream'", "'missing_in_batch'"):
        assert cause in sql


def test_the_trino_check_finds_duckdb_spellings():
    """The parser check above can fail: the DuckDB render of the same template is not Trino SQL."""
    options = ReconcileOptions(now=NOW)
    values = dict(
        hour_start_ms=1, hour_end_ms=2, read_start_ms=0, horizon_ms=3, now_ms=4, ctas=False, window=False
    )
    duck = render(
        "batch/hour_sessions.sql", options.contract, dialect="duckdb", source="src", events=None, **values
    )
    problems = trino_problems(duck)
    for name in ("epoch_ms", "strftime", "hash", "strlen", "to_json"):
        assert f"calls {name}()" in " ".join(problems), (name, problems)


def test_same_template_as_duckdb_only_spellings_differ():
    """Both dialects render from one template: apart from function spellings the statements line up."""
    options = ReconcileOptions(now=NOW)
    common = dict(
        hour_start_ms=1,
        hour_end_ms=2,
        read_start_ms=0,
        horizon_ms=3,
        now_ms=4,
        ctas=False,
        source="src",
        events=None,
        window=False,
    )
    duck = render("batch/hour_sessions.sql", options.contract, dialect="duckdb", **common)
    trino = render("batch/hour_sessions.sql", options.contract, dialect="athena", **common)
    # DuckDB's render may ask for a CTE to be computed once (AS MATERIALIZED), Trino has no such keyword
    ctes = lambda sql: re.findall(r"^(\w+) AS (?:MATERIALIZED )?\(", sql, re.M)  # noqa: E731
    assert (
        ctes(duck)
        == ctes(trino)
        == [
            "source_events",
            "checked_events",
            "valid_events",
            "repeated_ids",
            "hour_events",
            "batch_sessions_gaps",
            "batch_sessions_numbered",
            "batch_sessions",
            "window_sessions",
        ]
    )
    # line for line, but for repeated_ids: DuckDB finds them by sorting the id hashes, Trino by grouping the ids
    without_repeated_ids = lambda sql: re.sub(r"^repeated_ids AS \(.*?^\),$", "", sql, flags=re.M | re.S)  # noqa: E731
    assert "lag(id_key)" in duck and "lag(id_key)" not in trino
    assert len(without_repeated_ids(duck).splitlines()) == len(without_repeated_ids(trino).splitlines())
    assert CONTRACT.gap_ms == options.contract.gap_ms and f"<= {CONTRACT.gap_ms}" in trino


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"database": "Click-Stream"}, "database must be a lower-case"),
        ({"events_table": "x; DROP"}, "events_table must be a lower-case"),
        ({"external_location": "s3://lake/no-slash"}, "external_location must look like"),
        ({"hour": H + timedelta(minutes=1)}, "start of an hour"),
    ],
)
def test_values_are_validated(override, message):
    with pytest.raises(ValueError, match=message):
        sessions_sql(**override)

"""DuckDB batch sessions against the golden cases, the Python reference and the docs (no JVM here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from include.sessions import batch
from include.sessions.contract import SessionContract, session_id
from localdev import reference
from tests.sessions import golden

CONTRACT = SessionContract()


def run_batch(records, contract=CONTRACT):
    con = batch.connect()
    batch.register_raw_records(con, records)
    return batch.sessions(con, contract), batch.metrics(con, contract), batch.rejected(con, contract)


def test_golden_cases_on_duckdb():
    g = golden.build()
    sessions, _, rejected = run_batch(g.records)
    golden.expected_common(sessions, "duckdb")
    assert {r["record"]: r["reason"] for r in rejected} == g.rejected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_duckdb_equals_python_reference(seed):
    g = golden.build()
    arrivals = g.arrivals + golden.random_block(seed, range(1000, 1012), golden.T + 4_000_000, 1500)
    records = [text for _, text in sorted(arrivals, key=lambda a: a[0])]
    sessions, metrics, rejected = run_batch(records)
    checked = reference.check_records(records, CONTRACT)
    assert sessions == reference.sessionize(checked.events, CONTRACT)
    assert metrics == reference.metrics(checked.events, CONTRACT)
    assert [(r["reason"], r["record"]) for r in rejected] == [
        (r["reason"], r["record"]) for r in checked.rejected
    ]
    assert len(sessions) > 100


def test_session_id_is_md5_of_key_and_start():
    g = golden.build()
    sessions, _, _ = run_batch(g.records)
    (a,) = golden.by_user(sessions, 101)
    assert a["session_id"] == session_id(101, "mobile", golden.T)
    import hashlib

    assert a["session_id"] == hashlib.md5(f"101|mobile|{golden.T}".encode()).hexdigest()


def test_docs_worked_example_on_duckdb_and_reference():
    events, expected = golden.doc_example()
    sessions, _, rejected = run_batch(events)
    assert rejected == []
    assert sessions == expected
    checked = reference.check_records(events, CONTRACT)
    assert reference.sessionize(checked.events, CONTRACT) == expected
    first = expected[0]
    start_ms = int(datetime.fromisoformat(first["session_start"].replace("Z", "+00:00")).timestamp() * 1000)
    assert first["session_id"] == session_id(first["user_id"], first["device_id"], start_ms)


def test_changing_the_gap_changes_the_batch_sessions():
    g = golden.build()
    wide = CONTRACT.replace(gap_ms=61_001)
    sessions, _, _ = run_batch(g.records, wide)
    (b,) = golden.by_user(sessions, 102)  # 60.001 s apart: one session with the wider gap
    assert b["event_count"] == 2 and b["session_end"] == "2024-03-10T09:02:02.002Z"
    narrow = CONTRACT.replace(gap_ms=59_999)
    sessions, _, _ = run_batch(g.records, narrow)
    assert len(golden.by_user(sessions, 101)) == 2  # exactly 60 s apart: split with a 59.999 s gap
    assert len(golden.by_user(sessions, 103)) == 1  # 59.999 s apart: still inclusive


def test_typed_source_gives_the_same_sessions_as_raw():
    """The compacted Parquet shape (typed columns, timestamp[ms, UTC]) goes through the same template."""
    g = golden.build()
    checked = reference.check_records(g.records, CONTRACT)
    table = pa.table(
        {
            "event_id": [e.event_id for e in checked.events],
            "user_id": pa.array([e.user_id for e in checked.events], pa.int32()),
            "device_id": [e.device_id for e in checked.events],
            "client_event": [e.client_event for e in checked.events],
            "client_timestamp": pa.array(
                [datetime.fromtimestamp(e.event_ms / 1000, UTC) for e in checked.events],
                pa.timestamp("ms", "UTC"),
            ),
            "countrycode": [e.countrycode for e in checked.events],
        }
    )
    con = batch.connect()
    con.register("compacted", table)
    typed = batch.sessions(con, CONTRACT, "compacted", source_kind="typed", arrival_order="event_id")
    raw, _, _ = run_batch(g.records)
    assert typed == raw


def test_metrics_count_distinct_events_and_users_per_minute():
    events = [
        golden.event("m1", 1, golden.T + 1_000, "login", countrycode="IE"),
        golden.event("m2", 2, golden.T + 2_000, "login", countrycode="IE"),
        golden.event("m3", 1, golden.T + 3_000, "login", countrycode="IE"),
        golden.event("m3", 1, golden.T + 3_000, "login", countrycode="IE"),
        golden.event("m4", 1, golden.T + 60_000, "login", countrycode="IE"),
    ]
    _, metrics, _ = run_batch([json.dumps(e) for e in events])
    assert metrics == [
        {
            "window_start": "2024-03-10T09:00:00.000Z",
            "window_end": "2024-03-10T09:01:00.000Z",
            "countrycode": "IE",
            "device_id": "mobile",
            "client_event": "login",
            "events": 3,
            "users": 2,
        },
        {
            "window_start": "2024-03-10T09:01:00.000Z",
            "window_end": "2024-03-10T09:02:00.000Z",
            "countrycode": "IE",
            "device_id": "mobile",
            "client_event": "login",
            "events": 1,
            "users": 1,
        },
    ]

"""Batch sessions of an hour (hour_events.sql + hour_sessions.sql) against the Python reference and the existing
DuckDB twin (batch/sessions.sql): reading [H - gap, H + 1 h + L] is enough for every settled session of H."""

from __future__ import annotations

import random
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.reconciliation import hour_sessions
from include.reconciliation.inputs import EVENTS_SCHEMA, STREAM_SESSION_SCHEMA, register
from include.reconciliation.options import HourWindow, ReconcileOptions
from include.sessions import batch as batch_twin
from include.sessions.contract import SESSION_FIELDS
from localdev import reference
from tests.reconciliation.helpers import CONTRACT, H_MS, H, eid, event, line

OPTIONS = ReconcileOptions(now=H + timedelta(days=1))


def typed(events: list[dict]) -> pa.Table:
    ms = [reference.timestamp_ms(e["client_timestamp"]) for e in events]
    return pa.table(
        {
            "event_id": [e["event_id"] for e in events],
            "user_id": pa.array([e["user_id"] for e in events], pa.int32()),
            "device_id": [e["device_id"] for e in events],
            "client_event": [e["client_event"] for e in events],
            "client_timestamp": pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "countrycode": [e["countrycode"] for e in events],
        },
        schema=EVENTS_SCHEMA,
    )


def build(events: list[dict], options: ReconcileOptions = OPTIONS):
    con = hour_sessions.duckdb.connect()
    view = register(con, "events_in", typed(events), EVENTS_SCHEMA, "parquet")
    window = HourWindow.of(H, options)
    built = hour_sessions.build(con, view, window, options)
    rows = con.execute(f"SELECT * FROM {built.window_table} ORDER BY user_id, device_id, start_ms").fetchall()
    names = [d[0] for d in con.description]
    return con, built, window, [dict(zip(names, r, strict=True)) for r in rows]


def random_events(seed: int, count: int = 3000) -> list[dict]:
    """Events from H - 30 min to H + 2 h with gaps around the session gap, so sessions cross every boundary."""
    rnd = random.Random(seed)
    clocks = {u: -1800 + rnd.random() * 600 for u in range(1, 21)}
    events = []
    for i in range(count):
        user = rnd.randrange(1, 21)
        clocks[user] += rnd.choice((0, 0.005, 2, 20, 59.999, 60, 60.001, 90, 400))
        events.append(
            event(
                i,
                user,
                clocks[user],
                rnd.choice(("login", "checkout", "view_cart")),
                rnd.choice(("mobile", "tablet")),
            )
        )
    rnd.shuffle(events)
    return [e for e in events if reference.timestamp_ms(e["client_timestamp"]) < H_MS + 3 * 3_600_000]


def reference_sessions(events: list[dict]) -> list[dict]:
    checked = reference.check_records([line(e) for e in events], CONTRACT, now_ms=H_MS + 86_400_000)
    return reference.sessionize(checked.events, CONTRACT)


@pytest.mark.parametrize("seed", [1, 2])
def test_hour_sessions_equal_the_reference_over_all_events(seed):
    events = random_events(seed)
    _, built, window, rows = build(events)
    start = lambda s: reference.timestamp_ms(s["session_start"])  # noqa: E731
    last = lambda s: reference.timestamp_ms(s["last_event_at"])  # noqa: E731
    everything = reference_sessions(events)
    # Settled sessions of H computed from the window equal those computed from every event there is.
    settled = [{k: r[k] for k in SESSION_FIELDS} for r in rows if r["in_hour"] and r["settled"]]
    expected = [
        s
        for s in everything
        if H_MS <= start(s) < H_MS + 3_600_000 and last(s) + CONTRACT.gap_ms <= window.horizon_ms
    ]
    assert settled == expected
    assert built.settled == len(expected) > 20
    # Deferred ones are what the window holds of them: the reference over the window's events.
    in_window = [
        e
        for e in events
        if window.read_start_ms <= reference.timestamp_ms(e["client_timestamp"]) <= window.horizon_ms
    ]
    deferred = [{k: r[k] for k in SESSION_FIELDS} for r in rows if r["in_hour"] and not r["settled"]]
    assert deferred == [
        s
        for s in reference_sessions(in_window)
        if H_MS <= start(s) < H_MS + 3_600_000 and last(s) + CONTRACT.gap_ms > window.horizon_ms
    ]
    assert built.deferred == len(deferred)


def test_hour_sessions_equal_the_duckdb_twin_of_the_stream():
    """batch/sessions.sql (raw records, the golden-tested twin of the Flink SQL) gives the same sessions of H."""
    events = random_events(3)
    con, _, window, rows = build(events)
    twin_con = batch_twin.connect()
    batch_twin.register_raw_records(twin_con, [line(e) for e in events])
    twin = [
        s
        for s in batch_twin.sessions(twin_con, CONTRACT)
        if H_MS <= reference.timestamp_ms(s["session_start"]) < H_MS + 3_600_000
        and reference.timestamp_ms(s["last_event_at"]) + CONTRACT.gap_ms <= window.horizon_ms
    ]
    assert [{k: r[k] for k in SESSION_FIELDS} for r in rows if r["in_hour"] and r["settled"]] == twin
    table = hour_sessions.hour_sessions_table(con)
    assert table.schema == STREAM_SESSION_SCHEMA
    assert table.column_names == list(SESSION_FIELDS)


def test_sessions_are_attributed_to_their_start_hour():
    events = [
        event(1, 1, -30),  # 09:59:30 .. 10:00:30: the previous hour's
        event(2, 1, 30),
        event(3, 2, 3599.999),  # 10:59:59.999 .. 11:00:30: this hour's
        event(4, 2, 3630),
        event(5, 3, 3600),  # 11:00:00.000: the next hour's
        event(6, 4, -61),  # 09:58:59: outside the read window (H - gap), not read at all
    ]
    _, _, _, rows = build(events)
    by_user = {r["user_id"]: r for r in rows}
    assert by_user[1]["in_hour"] is False and by_user[1]["session_start"] == "2026-11-27T09:59:30.000Z"
    assert by_user[2]["in_hour"] is True and by_user[2]["last_event_at"] == "2026-11-27T11:00:30.000Z"
    assert by_user[3]["in_hour"] is False
    assert 4 not in by_user


def test_settled_exactly_when_last_event_plus_gap_reaches_the_horizon():
    options = OPTIONS.replace(settle_minutes=10)
    horizon_s = 3600 + 600
    gap_s = CONTRACT.gap_ms / 1000
    # user 1 chains events 60 s apart from 10:58 up to horizon - gap: settled; user 2 one ms later: deferred
    chain = [3480 + 60 * i for i in range(int((horizon_s - gap_s - 3480) // 60) + 1)]
    assert chain[-1] == horizon_s - gap_s
    events = [event(10 + i, 1, t) for i, t in enumerate(chain)]
    events += [event(100 + i, 2, t + 0.001) for i, t in enumerate(chain)]
    _, built, window, rows = build(events, options)
    assert window.horizon_ms == H_MS + horizon_s * 1000
    by_user = {r["user_id"]: r for r in rows}
    assert by_user[1]["settled"] is True and by_user[1]["event_count"] == len(chain)
    assert by_user[2]["settled"] is False
    assert (built.settled, built.deferred) == (1, 1)


def test_window_reads_from_h_minus_gap_to_the_horizon():
    window = HourWindow.of(H, ReconcileOptions(settle_minutes=30))
    assert window.describe() == {
        "hour_start": "2026-11-27T10:00:00.000Z",
        "read_from": "2026-11-27T09:59:00.000Z",
        "settle_horizon": "2026-11-27T11:30:00.000Z",
        "extension_hours": 0,
    }
    assert [h.hour for h in window.event_hours()] == [9, 10, 11]
    assert [h.hour for h in window.stream_session_hours()] == [8, 9, 10, 11]
    # extended by 2 h to complete sessions still open at the first horizon: reads 2 more hours
    longer = HourWindow.of(H, ReconcileOptions(settle_minutes=30, extension_hours=2))
    assert longer.describe()["settle_horizon"] == "2026-11-27T13:30:00.000Z"
    assert longer.read_start_ms == window.read_start_ms
    assert [h.hour for h in longer.event_hours()] == [9, 10, 11, 12, 13]
    for bad in (-1, 25, True, 1.0):
        with pytest.raises(ValueError, match="extension_hours"):
            ReconcileOptions(extension_hours=bad)
    with pytest.raises(ValueError, match="start of an hour"):
        HourWindow.of(H + timedelta(minutes=5), ReconcileOptions())


def test_written_sessions_parquet_has_the_stream_columns(tmp_path):
    con, _, _, _ = build([event(1, 1, 10), event(2, 1, 20), eid_event := event(3, 2, 50)])
    assert eid_event["event_id"] == eid(3)
    path = hour_sessions.write_hour_sessions(hour_sessions.hour_sessions_table(con), tmp_path / "p.parquet")
    table = pq.read_table(path)
    assert table.column_names == list(SESSION_FIELDS)
    assert table.num_rows == 2
    first = path.read_bytes()
    hour_sessions.write_hour_sessions(hour_sessions.hour_sessions_table(con), path)
    assert path.read_bytes() == first


def test_copies_of_an_event_id_keep_the_smallest_time_then_event_then_country():
    """The dedup ranks only repeated ids (found by a hash aggregate); the winner is the contract's for every tie."""
    copies = [
        {**event(1, 1, 20, "b_evt", countrycode="IE"), "user_id": 9},  # later: loses
        event(1, 1, 10, "b_evt", countrycode="IE"),  # ties on time with the next: client_event decides
        event(
            1, 1, 10, "a_evt", countrycode="IE"
        ),  # ties on (time, client_event) with the next: country decides
        {**event(1, 1, 10, "a_evt", countrycode="DE"), "user_id": 2},  # the winner
        event(2, 3, 15, "only"),  # a unique id next to the copies
    ]
    for order in (copies, copies[::-1]):
        con, built, _, rows = build(order)
        events = con.execute(
            "SELECT event_id, user_id, client_event, countrycode FROM hour_events ORDER BY 1"
        ).fetchall()
        assert events == [(eid(1), 2, "a_evt", "DE"), (eid(2), 3, "only", "IE")]
        assert built.window_events == 2
        assert [(r["user_id"], r["event_count"]) for r in rows] == [(2, 1), (3, 1)]


@pytest.mark.parametrize(
    ("change", "kept"),
    [
        ({}, True),
        ({"client_event": "tab\there"}, False),
        ({"countrycode": "\x1f"}, False),
        ({"device_id": ""}, False),
        ({"client_event": "\U0001f37a" * 64}, True),  # 64 characters, 256 bytes
        ({"client_event": "\U0001f37a" * 65}, False),
        ({"client_event": 'say "hi" \\ / \u2028'}, True),  # escaped in JSON, but no control character
        ({"user_id": 2_147_483_647}, True),
    ],
)
def test_typed_rules_shortcut_decides_like_the_rules(change, kept):
    """Rows the cheap all-rules test cannot pass go through the rule-by-rule CASE: same verdict as the reference."""
    e = {**event(1, 1, 10), **change}
    _, built, _, _ = build([e])
    assert built.window_events == (1 if kept else 0)
    assert (not reference_sessions([e])) is (not kept)


@pytest.mark.parametrize("kept", [True, False])
def test_build_leaves_the_connections_insertion_order_setting_as_it_was(kept):
    """The build writes its tables in any row order (faster), then gives the connection back as it was: later
    queries on it (the classification, the report) may rely on the setting."""
    con = hour_sessions.duckdb.connect()
    con.execute(f"SET preserve_insertion_order = {str(kept).lower()}")
    view = register(con, "events_in", typed([event(1, 1, 10), event(2, 1, 20)]), EVENTS_SCHEMA, "parquet")
    built = hour_sessions.build(con, view, HourWindow.of(H, OPTIONS), OPTIONS)
    assert built.window_events == 2
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0] is kept


def test_first_events_tied_on_time_and_name_take_the_country_of_the_smallest_event_id():
    """The session window sorts by (time, client_event) only; where a session's first events also tie on the name,
    the countrycode must still be the smallest event_id's (the contract's first event), whatever the input order.
    With 40 such sessions an arbitrary pick among the ties would get some wrong."""
    events = []
    for user in range(1, 41):
        n = user * 10
        # three events tie at the session's start; the smallest id (n + 1) is from "AA", listed last
        events += [
            event(n + 3, user, 5, "login", countrycode="CC"),
            event(n + 2, user, 5, "login", countrycode="BB"),
            event(n + 1, user, 5, "login", countrycode="AA"),
            event(n + 4, user, 5, "a_first_by_name", device_id="tablet", countrycode="ZZ"),  # another key
            event(n + 5, user, 30, "logout", countrycode="DD"),
            event(n + 6, user, 30, "logout", countrycode="EE"),  # a tie at the end changes nothing
        ]
    for order in (events, events[::-1], random.Random(7).sample(events, len(events))):
        con, _, _, rows = build(order)
        expected = reference_sessions(order)
        assert [{k: r[k] for k in SESSION_FIELDS} for r in rows] == expected
        assert {r["countrycode"] for r in rows if r["device_id"] == "mobile"} == {"AA"}
        assert sum(r["first_tied"] for r in rows) == 40  # only the mobile sessions' first events tie


@pytest.mark.parametrize("max_words", [1, 4096])
def test_sessions_are_the_same_whether_words_are_enums_or_text(monkeypatch, max_words):
    """device_id and client_event are sorted as ENUMs of their words when they have few: the same order as text."""
    from include.sessions import vocabulary

    monkeypatch.setattr(vocabulary, "MAX_ENUM_WORDS", max_words)
    events = random_events(4, 1500)
    _, _, window, rows = build(events)
    expected = [
        s
        for s in reference_sessions(events)
        if H_MS <= reference.timestamp_ms(s["session_start"]) < H_MS + 3_600_000
        and reference.timestamp_ms(s["last_event_at"]) + CONTRACT.gap_ms <= window.horizon_ms
    ]
    assert [{k: r[k] for k in SESSION_FIELDS} for r in rows if r["in_hour"] and r["settled"]] == expected
    assert len(expected) > 20

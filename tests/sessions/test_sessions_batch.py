"""DuckDB batch sessions against the golden cases, the Python reference and the docs (no JVM here)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from include.sessions import batch
from include.sessions.contract import SESSION_FIELDS, SessionContract, session_id
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


# --- The DuckDB engine's reading of a JSON-lines file (localdev.event_files.load_events_file) ---

_GOOD = json.dumps(golden.event("ok", 1, golden.T))
_COMPACT = json.dumps(golden.event("ok", 1, golden.T), separators=(",", ":"))
_TRICKY_LINES = [
    '{"event_id": "a", "user_id": 1, "user_id": 2, "device_id": "m", "client_event": "v", '
    '"client_timestamp": "2024-03-10T09:00:00.000Z", "countrycode": "DE"}',  # repeated key
    json.dumps({**golden.event("e", 1, golden.T), "client_event": "caf\u00e9"}, ensure_ascii=True),  # escape
    json.dumps({**golden.event("e", 1, golden.T), "client_event": "\ud800"}),  # lone surrogate escape
    json.dumps({**golden.event("e", 1, golden.T), "client_event": "x" * 65}),
    json.dumps({**golden.event("e", 1, golden.T), "user_id": 2147483648}),
    json.dumps({**golden.event("e", 1, golden.T), "user_id": 0}),
    json.dumps({**golden.event("e", 1, golden.T), "user_id": 1.0}),
    json.dumps({**golden.event("e", 1, golden.T), "user_id": True}),
    json.dumps({**golden.event("e", 1, golden.T), "user_id": None}),
    json.dumps({**golden.event("e", 1, golden.T), "device_id": ""}),
    json.dumps({**golden.event("e", 1, golden.T), "device_id": 7}),
    json.dumps({**golden.event("e", 1, golden.T), "countrycode": "D\tE"}),
    json.dumps({**golden.event("e", 1, golden.T), "client_timestamp": "2024-02-30T09:00:00.000Z"}),
    json.dumps({**golden.event("e", 1, golden.T), "client_timestamp": "2024-03-10T09:00:00Z"}),
    json.dumps(golden.event("e", 1, 4_102_444_800_000)),  # 2100: further ahead than allowed
    json.dumps({**golden.event("e", 1, golden.T), "extra": "x"}),
    json.dumps({k: v for k, v in golden.event("e", 1, golden.T).items() if k != "device_id"}),
    "\ufeff" + _GOOD,  # byte order mark
    _GOOD[:-1] + ",}",  # trailing comma
    _GOOD.replace('"user_id": 1', '"user_id": NaN'),
    "\t" + _GOOD + " \r",  # JSON whitespace around the object, a carriage return before the newline
    _GOOD.replace(", ", ",\r"),  # a carriage return inside: JSON whitespace, not a line break here
    " \t ",  # blank
    "[1]",
    "{not json",
    # the writers' own shapes, which SQL proves by writing the six values back: only the exact text counts
    json.dumps({**golden.event("e", 1, golden.T), "client_timestamp": "0000-01-01T00:00:00.000Z"}),  # year 0
    _COMPACT,
    _COMPACT.replace('"user_id":1', '"user_id":NaN'),
    _COMPACT.replace('"user_id":1', '"user_id":null'),
    _COMPACT[:-1] + ',"extra":1}',
    _GOOD.replace('"user_id": 1', '"user_id": -0'),
    _GOOD.replace('"user_id": 1', '"user_id": "1"'),
    _GOOD.replace('"user_id": 1', '"user_id": 1e0'),
    _GOOD.replace('"user_id": 1', '"user_id": 01'),
    _GOOD.replace('"user_id": 1', '"user_id": 99999999999999999999'),
    _GOOD.replace('"user_id": 1', '"user_id": [1]'),
    _GOOD.replace('"ok"', '"o\\/k"'),  # an escape that reads as plain text
    _GOOD.replace('"ok"', '"o\\"k"'),  # an escaped quote
    _GOOD.replace('"ok"', '"o\x00k"'),  # NUL
    _GOOD.replace('"ok"', '"o\x1fk"'),
    _GOOD.replace('"ok"', '""'),
    _GOOD.replace('"mobile"', '"mobile", "device_id": "mobile"'),  # a repeated member with the same value
    _GOOD + " {}",  # two JSON values on one line
    _GOOD + _GOOD,
    _GOOD + "\r",
    " " + _GOOD,
    "\ufeff" + _COMPACT,
    json.dumps(golden.event("e", 1, golden.T), sort_keys=True),  # another member order
]


def _outcome(read, path):
    from localdev.event_files import InputError

    try:
        read(path)
    except InputError as exc:
        return str(exc)
    return "accepted"


@pytest.mark.parametrize("bad", _TRICKY_LINES + list(golden.build().rejected))
def test_sql_reading_of_a_file_gives_the_python_verdict_and_message(tmp_path, bad):
    """Every line SQL cannot prove good goes to the Python checks: same verdict, same error message."""
    from localdev.event_files import load_events_file, read_events_file

    path = tmp_path / "events.jsonl"
    path.write_bytes(("\n".join([_GOOD, bad, _GOOD]) + "\n").encode("utf-8", "surrogatepass"))
    python = _outcome(lambda p: read_events_file(p, CONTRACT), path)
    sql = _outcome(lambda p: load_events_file(batch.connect(), p, CONTRACT), path)
    assert sql == python


def test_sql_reading_of_a_file_refuses_bad_utf8_like_python(tmp_path):
    from localdev.event_files import InputError, load_events_file

    path = tmp_path / "events.jsonl"
    path.write_bytes(_GOOD.encode() + b"\n" + _GOOD.encode()[:-3] + b'\xff"}\n')
    with pytest.raises(InputError, match=r"line 2: not UTF-8 \(invalid start byte at byte"):
        load_events_file(batch.connect(), path, CONTRACT)


@pytest.mark.parametrize(
    ("with_escape", "separators", "newline"),
    [(False, None, "\n"), (False, (",", ":"), "\n"), (False, (", ", ":"), "\r\n"), (True, None, "\n")],
)
def test_sql_reading_sessionizes_like_the_reference(tmp_path, with_escape, separators, newline):
    """Plain files go the proven way (any spacing, CRLF too), files with a line only Python could prove good the
    raw way: same sessions."""
    from localdev.event_files import load_events_file

    records = [text for _, text in golden.random_block(7, range(2000, 2010), golden.T, 800)]
    if separators:
        records = [json.dumps(json.loads(r), separators=separators) for r in records]
    if with_escape:
        records.append(json.dumps(golden.event("esc\u00e9", 2000, golden.T + 5), ensure_ascii=True))
    path = tmp_path / "events.jsonl"
    path.write_bytes(("".join(r + newline for r in records) + newline).encode())
    con = batch.connect()
    events = load_events_file(con, path, CONTRACT)
    assert events.source_kind == ("raw" if with_escape else "proven")
    sessions = batch.sessions(
        con, CONTRACT, events.relation, source_kind=events.source_kind, arrival_order=events.arrival_order
    )
    checked = reference.check_records(records, CONTRACT)
    assert checked.rejected == [] and len(sessions) > 50
    assert sessions == reference.sessionize(checked.events, CONTRACT)
    kind = {"source_kind": events.source_kind, "arrival_order": events.arrival_order}
    assert batch.metrics(con, CONTRACT, events.relation, **kind) == reference.metrics(
        checked.events, CONTRACT
    )
    assert batch.rejected(con, CONTRACT, events.relation, **kind) == []
    again = load_events_file(con, path, CONTRACT)  # the same table and types again, on the same connection
    assert batch.sessions(con, CONTRACT, again.relation, **kind) == sessions


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # json.loads keeps the last user_id (2), DuckDB's reader the first (1): the engines would disagree
        (_GOOD[:-1] + ', "user_id": 2}', "field user_id appears more than once"),
        # DuckDB's JSON reader refuses the escape, so the DuckDB engine dropped the event without a word
        (
            json.dumps({**golden.event("e", 7, golden.T), "client_event": "\ud800"}),
            "client_event contains an unpaired surrogate escape",
        ),
    ],
)
def test_cli_duckdb_refuses_lines_the_engines_would_read_differently(tmp_path, bad, message):
    from localdev import cli
    from localdev.event_files import InputError

    path = tmp_path / "events.jsonl"
    path.write_text(_GOOD + "\n" + bad + "\n")
    with pytest.raises(InputError, match=f"line 2: {message}"):
        cli.sessionize("duckdb", path, CONTRACT)


@pytest.mark.parametrize(
    ("with_escape", "quotes"), [(False, True), (True, True), (False, False)], ids=["raw", "escaped", "proven"]
)
def test_cli_duckdb_output_lines_are_python_json_dumps_of_the_rows(tmp_path, with_escape, quotes):
    """The command's lines are made in SQL; byte for byte what json.dumps(row, ensure_ascii=False) writes, whether
    the file is read the raw way (a quote or a backslash in a line) or proven (characters JSON leaves as they are)."""
    from localdev import cli
    from localdev.event_files import load_events_file

    records = [text for _, text in golden.random_block(11, range(3000, 3010), golden.T, 600)]
    odd = ["caf\u00e9 \U0001f37a", "del\x7f", "sep\u2028", "slash/", "{x}: [1], y", "'single'"]
    if quotes:
        odd = ['say "hi"', "back\\slash", *odd]
    for i, name in enumerate(odd):
        records.append(
            json.dumps(golden.event(f"odd{i}", 3100 + i, golden.T + i, name), ensure_ascii=with_escape)
        )
    path = tmp_path / "events.jsonl"
    path.write_text("".join(r + "\n" for r in records), encoding="utf-8")
    kind = load_events_file(batch.connect(), path, CONTRACT).source_kind
    assert kind == ("raw" if quotes or with_escape else "proven")
    out = tmp_path / "sessions.jsonl"
    assert cli.main(["sessionize", "--engine", "duckdb", "--input", str(path), "--output", str(out)]) == 0
    expected = tmp_path / "expected.jsonl"
    cli._write_jsonl(expected, cli.sessionize("duckdb", path, CONTRACT), SESSION_FIELDS)
    assert out.read_bytes() == expected.read_bytes()
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").split("\n")[:-1]]  # not splitlines: U+2028
    assert [r["first_event"] for r in rows if r["user_id"] >= 3100] == odd and len(rows) > 50


def test_output_replaced_whole_while_the_beside_work_runs_and_its_error_is_raised(tmp_path):
    """The CLI closes its DuckDB connection on a thread while the rename frees the old output."""
    from localdev import cli

    out = tmp_path / "sessions.jsonl"
    out.write_bytes(b"old\n")
    ran = []
    cli._write_atomically(out, lambda handle: handle.write(b"new\n"), beside_rename=lambda: ran.append(1))
    assert out.read_bytes() == b"new\n" and ran == [1]

    def fails():
        raise RuntimeError("close failed")

    with pytest.raises(RuntimeError, match="close failed"):
        cli._write_atomically(out, lambda handle: handle.write(b"newer\n"), beside_rename=fails)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sessions.jsonl"]  # no temporary file left


def test_cli_duckdb_output_of_a_file_without_events_is_empty(tmp_path):
    from localdev import cli

    path = tmp_path / "events.jsonl"
    path.write_text("\n  \n")
    out = tmp_path / "sessions.jsonl"
    assert cli.main(["sessionize", "--engine", "duckdb", "--input", str(path), "--output", str(out)]) == 0
    assert out.read_bytes() == b""


def test_cli_duckdb_keeps_the_first_line_of_a_repeated_event_id(tmp_path):
    """Copies of an event_id that differ: the first line wins, as in the reference (and Flink's first arrival)."""
    from localdev import cli

    first = golden.event("dup", 5, golden.T + 90_000, "login")
    later = golden.event("dup", 5, golden.T, "logout", countrycode="IE")  # earlier time, later line
    records = [json.dumps(golden.event("a", 5, golden.T + 30_000)), json.dumps(first), json.dumps(later)]
    records += [json.dumps(golden.event(f"x{i}", 6, golden.T + i)) for i in range(3)]
    records.append(json.dumps(golden.event("dup", 5, golden.T + 60_000, "checkout")))  # the last copy
    path = tmp_path / "events.jsonl"
    path.write_text("".join(r + "\n" for r in records))
    sessions = cli.sessionize("duckdb", path, CONTRACT)
    checked = reference.check_records(records, CONTRACT)
    assert sessions == reference.sessionize(checked.events, CONTRACT)
    (user5,) = golden.by_user(sessions, 5)
    assert (user5["event_count"], user5["last_event"]) == (2, "login")


@pytest.mark.parametrize(
    ("ids", "read_as"),
    [
        # UUIDs as DuckDB writes them are read as UUIDs, which sort like their text (a signed 128-bit order would
        # put the f... id first)
        (
            [
                "f0000000-0000-4000-8000-000000000000",
                "0fffffff-ffff-4fff-bfff-ffffffffffff",
                "80000000-0000-4000-8000-000000000000",
            ],
            "UUID",
        ),
        # one id that is not such a UUID (uppercase; no UUID at all): every id stays text
        (
            ["F0000000-0000-4000-8000-000000000000", "0fffffff-ffff-4fff-bfff-ffffffffffff", "e" * 8],
            "VARCHAR",
        ),
        (
            ["f0000000-0000-4000-8000-000000000000", "0fffffff-ffff-4fff-bfff-ffffffffffff", "a" * 8],
            "VARCHAR",
        ),
    ],
)
def test_cli_duckdb_breaks_ties_by_the_event_id_text(tmp_path, ids, read_as):
    """Events of one key at the same time with the same client_event: the smallest event_id (as text) comes
    first, and the session takes its countrycode, however the ids are read."""
    from localdev.event_files import load_events_file

    uuids = [f"{i:08x}-1111-4111-8111-111111111111" for i in (0xC0000000, 0x10000000, 0xA0000000)]
    records = [
        json.dumps(golden.event(event_id, 9, golden.T, "login", countrycode=country))
        for event_id, country in zip(ids + uuids, ["IE", "DE", "CZ", "BE", "IE", "DE"], strict=True)
    ]
    records.append(json.dumps(golden.event(uuids[0], 10, golden.T, "login", countrycode="CZ")))
    path = tmp_path / "events.jsonl"
    path.write_text("".join(r + "\n" for r in records))
    con = batch.connect()
    events = load_events_file(con, path, CONTRACT)
    assert con.sql(f"SELECT DISTINCT typeof(event_id) FROM {events.relation}").fetchall() == [(read_as,)]
    kind = {"source_kind": events.source_kind, "arrival_order": events.arrival_order}
    sessions = batch.sessions(con, CONTRACT, events.relation, **kind)
    checked = reference.check_records(records, CONTRACT)
    assert sessions == reference.sessionize(checked.events, CONTRACT)
    assert golden.by_user(sessions, 9)[0]["countrycode"] == "DE"


@pytest.mark.parametrize("max_words", [2, 4096])
def test_sql_reading_keeps_large_vocabularies_as_text(tmp_path, monkeypatch, max_words):
    """device_id, client_event and countrycode become ENUMs only when they have few words: same sessions."""
    from include.sessions import vocabulary
    from localdev.event_files import load_events_file

    monkeypatch.setattr(vocabulary, "MAX_ENUM_WORDS", max_words)
    records = [text for _, text in golden.random_block(5, range(4000, 4010), golden.T, 400)]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(r + "\n" for r in records))
    con = batch.connect()
    events = load_events_file(con, path, CONTRACT)
    for column in ("device_id", "client_event", "countrycode"):
        words = {json.loads(r)[column] for r in records}
        [(read_as,)] = con.sql(f"SELECT DISTINCT typeof({column}) FROM {events.relation}").fetchall()
        expected = (
            f"ENUM({', '.join(repr(w) for w in sorted(words))})" if len(words) <= max_words else "VARCHAR"
        )
        assert read_as == expected
    kind = {"source_kind": events.source_kind, "arrival_order": events.arrival_order}
    checked = reference.check_records(records, CONTRACT)
    assert batch.sessions(con, CONTRACT, events.relation, **kind) == reference.sessionize(
        checked.events, CONTRACT
    )


@pytest.mark.parametrize("scan_bytes", [1, 7, 64, 1 << 22])
def test_lines_table_splits_and_marks_lines_like_python(monkeypatch, scan_bytes):
    """The lines as iterating the binary file gives them, and `clean` exactly when a line has no backslash and no
    control byte but its line end, however the scan is cut into pieces."""
    from localdev import event_files

    monkeypatch.setattr(event_files, "_SCAN_BYTES", scan_bytes)
    lines = [b'{"a": 1}\n', b"\n", b"plain\r\n", b"cr\rinside\n", b"tab\there\n", b"back\\slash\n", b"\r\n"]
    lines += [b"caf\xc3\xa9\n", b"nul\x00\n", b"last line without newline\r"]
    data = b"".join(lines)
    table = event_files._lines_table(data)
    assert [x.as_py().encode() for x in table.column("line")] == list(io.BytesIO(data))
    assert table.column("line_no").to_pylist() == list(range(1, len(lines) + 1))
    clean = [not re.search(rb"[\x00-\x1f\\]", line.removesuffix(b"\n").removesuffix(b"\r")) for line in lines]
    clean[-1] = False  # a carriage return with no newline after it is not a line end
    assert table.column("clean").to_pylist() == clean


def test_a_failing_output_write_fails_the_command_with_the_writers_error(tmp_path):
    """The session lines are written on a thread of their own while DuckDB makes the next batch; an error there
    (here a full disk, /dev/full) still fails the call with it, not a short file and a success."""
    from include.sessions import batch
    from localdev.event_files import load_events_file

    path = tmp_path / "events.jsonl"
    path.write_text(
        "\n".join(text for _, text in golden.random_block(7, range(4000, 4050), golden.T, 600)) + "\n"
    )
    con = batch.connect()
    try:
        events = load_events_file(con, path, CONTRACT)
        with open("/dev/full", "wb", buffering=0) as full, pytest.raises(OSError, match="No space left"):
            batch.write_sessions_jsonl(
                con, CONTRACT, full, events.relation, source_kind=events.source_kind, arrival_order="line_no"
            )
    finally:
        con.close()

"""The Flink SQL job on the real engine (PyFlink, local, bounded): golden cases, late/rejected sinks, parity.

One bounded job runs all golden cases, a random block and the docs example (module-scoped: each JVM start costs
seconds); a second run goes through the CLI with a changed gap.
"""

from __future__ import annotations

import json

import pytest

from include.sessions import batch
from include.sessions.contract import SESSION_FIELDS, SessionContract
from localdev import cli, flink_runner, reference
from tests.sessions import golden

pytestmark = pytest.mark.jvm

CONTRACT = SessionContract()
BAD_TIMESTAMP = "client_timestamp is not a valid ISO-8601 UTC timestamp like 2026-11-27T10:15:30.123Z"


def _with(event_id: str, **fields) -> str:
    return golden.line({**golden.event(event_id, 122, golden.T + 430_000), **fields})


#: Records for the Flink job's own formulations (record, expected reason or None for a valid event): the
#: JSON-object check with JSON whitespace before the object; timestamps the lenient parser accepts or shifts far
#: ahead (April 31, hour 24: their rowtime is not their timestamp, so they must neither count nor move the
#: watermark, or every later event would turn late); a future timestamp wins over a later rule.
FLINK_EXTRA = [
    ("  \t" + golden.line(golden.event("w1", 121, golden.T + 430_000)), None),
    (_with("r30", client_timestamp="2024-04-31T00:00:00.000Z"), BAD_TIMESTAMP),
    (_with("r31", client_timestamp="2024-03-10T24:00:00.000Z"), BAD_TIMESTAMP),
    (_with("r32", client_timestamp="2024-03-10T09:07:10.000Z "), BAD_TIMESTAMP),
    (_with("r33", client_timestamp=1710061630000), BAD_TIMESTAMP),
    (
        _with("r34", client_timestamp="2999-01-01T00:00:00.000Z", countrycode=""),
        "client_timestamp is further ahead of the processing time than allowed",
    ),
]


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    g = golden.build()
    arrivals = g.arrivals + golden.random_block(7, range(1000, 1010), golden.T + 4_000_000, 800)
    arrivals += [(golden.T + 430_000 + i / 100, text) for i, (text, _) in enumerate(FLINK_EXTRA)]
    records = [text for _, text in sorted(arrivals, key=lambda a: a[0])]
    doc_events, _ = golden.doc_example()
    records += doc_events  # a later day, so still in time order
    work = tmp_path_factory.mktemp("flink-golden")
    source = work / "events.jsonl"
    source.write_text("".join(r + "\n" for r in records), encoding="utf-8")
    run = flink_runner.run_bounded(source, CONTRACT, work_dir=work / "run", timeout_s=600)
    return g, records, run, work / "run" / "output"


def test_the_job_finished(golden_run):
    _, _, run, _ = golden_run
    assert run.status.state == flink_runner.FINISHED, run.status.failure


def test_golden_sessions_on_flink(golden_run):
    _, _, run, _ = golden_run
    golden.expected_common(run.sessions, "flink")


def test_late_events_go_to_the_late_sink_with_watermark_and_arrival(golden_run):
    g, _, run, _ = golden_run
    assert {r["event_id"] for r in run.late_events} == g.late_ids
    for row in run.late_events:
        event_ms = reference.timestamp_ms(row["client_timestamp"])
        assert event_ms < reference.timestamp_ms(row["watermark_at"]) + CONTRACT.late_margin_ms
        assert reference.timestamp_ms(row["arrival_time"]) is not None
    (j2,) = [r for r in run.late_events if r["event_id"] == "j2"]
    assert j2["watermark_at"] == "2024-03-10T09:05:59.999Z"  # exactly 1 ms before j2: late by the 2 ms margin


def test_rejected_records_keep_their_text_and_reason(golden_run):
    g, _, run, _ = golden_run
    extra = {text: reason for text, reason in FLINK_EXTRA if reason}
    assert {r["record"]: r["reason"] for r in run.rejected_events} == {**g.rejected, **extra}


def test_json_whitespace_before_the_object_is_a_valid_event(golden_run):
    _, _, run, _ = golden_run
    assert [(s["event_count"], s["session_start"]) for s in golden.by_user(run.sessions, 121)] == [
        (1, "2024-03-10T09:07:10.000Z")
    ]


def test_flink_sessions_equal_batch_and_reference_over_the_events_not_late(golden_run):
    g, records, run, _ = golden_run
    on_time = [r for r in records if not _is_late(r, g.late_ids)]
    con = batch.connect()
    batch.register_raw_records(con, on_time)
    expected = batch.sessions(con, CONTRACT)
    assert _sorted(run.sessions) == expected
    checked = reference.check_records(on_time, CONTRACT)
    assert expected == reference.sessionize(checked.events, CONTRACT)
    assert len(expected) > 150
    assert _sorted_metrics(run.metrics) == batch.metrics(con, CONTRACT)


def test_docs_worked_example_on_flink(golden_run):
    _, _, run, _ = golden_run
    _, expected = golden.doc_example()
    assert [s for s in _sorted(run.sessions) if s["session_start"].startswith("2025-")] == expected


def test_partitions_follow_session_start_hour(golden_run):
    _, _, _, output = golden_run
    for path in flink_runner.committed_files(output, "sessions"):
        for row in map(json.loads, path.read_text().splitlines()):
            start = row["session_start"]
            assert path.parent.name == f"hr={start[11:13]}" and path.parent.parent.name == f"dt={start[:10]}"
    assert (output / "sessions" / "dt=2024-03-10" / "hr=09" / "_SUCCESS").exists()


def test_cli_flink_and_duckdb_agree_and_follow_the_contract_gap(tmp_path):
    g = golden.build()
    records, seen = [], set()
    for record in g.records:  # what the CLI accepts: no bad records, in time order (no late or late copies)
        event_id = None if record in g.rejected else reference.extract_fields(record)["event_id"]
        if event_id is None or event_id in g.late_ids or (event_id == "f1" and event_id in seen):
            continue
        seen.add(event_id)
        records.append(record)
    source = tmp_path / "events.jsonl"
    source.write_text("".join(r + "\n" for r in records))
    outputs = {}
    for engine in ("duckdb", "flink"):
        out = tmp_path / f"{engine}.jsonl"
        argv = [
            "sessionize",
            "--engine",
            engine,
            "--input",
            str(source),
            "--output",
            str(out),
            "--gap-ms",
            "61001",
        ]
        assert cli.main(argv + ["--work-dir", str(tmp_path / "work")]) == 0
        outputs[engine] = out.read_text()
    assert outputs["flink"] == outputs["duckdb"]
    rows = [json.loads(x) for x in outputs["flink"].splitlines()]
    (b,) = golden.by_user(rows, 102)  # 60.001 s apart: one session only because the gap was widened
    assert b["event_count"] == 2 and b["session_end"] == "2024-03-10T09:02:02.002Z"
    assert all(list(row) == list(SESSION_FIELDS) for row in rows)


def _is_late(record: str, late_ids: set[str]) -> bool:
    fields = reference.extract_fields(record)
    return bool(fields) and fields.get("event_id") in late_ids


def _sorted(rows):
    return sorted(rows, key=lambda r: (r["user_id"], r["device_id"], r["session_start"]))


def _sorted_metrics(rows):
    return sorted(
        rows, key=lambda r: (r["window_start"], r["countrycode"], r["device_id"], r["client_event"])
    )

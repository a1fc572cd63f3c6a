"""Every cause of issue 10 section 2 on hand-made cases, through the real DuckDB path (offline inputs ->
reconcile_hour), plus deferred, hour attribution, totals and the pass/fail rule."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pyarrow.parquet as pq
import pytest

from include.reconciliation import (
    STATUS_BATCH_ONLY,
    STATUS_FAILED,
    STATUS_PASSED,
    ReconcileOptions,
    reconcile_hour,
)
from include.reconciliation.offline import read_inputs
from tests.reconciliation.helpers import (
    FUTURE_REASON,
    H,
    Scenario,
    event,
    every_cause,
    late_row,
    line,
    rejected_row,
    stream_sessions,
)

OPTIONS = ReconcileOptions()


def run(scenario: Scenario, tmp_path, options: ReconcileOptions = OPTIONS):
    files = scenario.write(tmp_path)
    inputs = read_inputs(files["batch"], files["sessions"], files["late"], files["rejected"])
    return reconcile_hour(H, inputs, options)


def causes_by_user(report) -> dict[int, str]:
    out: dict[int, str] = {}
    for d in report.differences:
        assert d["user_id"] not in out, f"user {d['user_id']} has two rows: {d}"
        out[d["user_id"]] = d["cause"]
    return out


@pytest.fixture(scope="module")
def every(tmp_path_factory):
    scenario = every_cause()
    return scenario, run(scenario, tmp_path_factory.mktemp("every"))


def test_every_cause_gets_its_row(every):
    scenario, result = every
    report = result.report
    differences = causes_by_user(report)
    for user, cause in scenario.expected.items():
        if cause in ("matched", "deferred", "not in H"):
            assert user not in differences, (user, differences.get(user))
        else:
            assert differences[user] == cause, user
    assert report.counts == {
        "deferred": 1,
        "matched": 2,
        "late": 2,
        "duplicate": 1,
        "rule_difference": 3,
        "missing_in_stream": 1,
        "missing_in_batch": 1,
        "mismatch": 1,
    }
    assert report.status == STATUS_FAILED and report.passed is False
    assert report.differences_total == len(report.differences) == 9


def test_difference_rows_carry_both_sides_and_the_evidence(every):
    _, result = every
    rows = {d["user_id"]: d for d in result.report.differences}
    split = rows[2]
    assert split["batch"]["event_count"] == 3
    assert [s["event_count"] for s in split["stream"]] == [1, 1]  # a late event split the stream's session
    assert split["evidence"]["late_ledger_events"] == 1
    assert rows[3]["stream"] == []  # the late event was the whole session
    assert rows[4]["evidence"]["extra_raw_copies"] == 1
    assert rows[5]["evidence"]["quarantined_events_stream_accepted"] == 1
    assert rows[7]["evidence"]["stream_rejected_events"] == 1
    assert rows[9]["batch"] is None and rows[9]["stream"][0]["event_count"] == 1
    assert rows[8] == {
        "user_id": 8,
        "device_id": "mobile",
        "session_start": "2026-11-27T10:13:20.000Z",
        "cause": "missing_in_stream",
        "batch": {
            "session_id": rows[8]["batch"]["session_id"],
            "session_start": "2026-11-27T10:13:20.000Z",
            "last_event_at": "2026-11-27T10:13:30.000Z",
            "event_count": 2,
        },
        "stream": [],
        "evidence": {
            "late_ledger_events": 0,
            "stream_rejected_events": 0,
            "quarantined_events_stream_accepted": 0,
            "extra_raw_copies": 0,
        },
    }


def test_totals_on_both_sides(every):
    _, result = every
    totals = result.report.totals
    assert totals["batch"]["sessions"] == 9  # users 1-5, 7, 8, 10, 12 (settled, starting in H)
    assert totals["batch"]["deferred_sessions"] == 1
    assert totals["batch"]["quarantined"] == 2 and totals["batch"]["duplicates_removed"] == 1
    assert totals["stream"]["late_events"] == 2 and totals["stream"]["rejected_records"] == 1
    assert totals["explained_events"] == {"late": 2, "duplicate": 1, "rule_difference": 3}
    # missing_in_stream 2 events + missing_in_batch 1 + mismatch 1
    assert (totals["unexplained_sessions"], totals["unexplained_events"]) == (3, 4)
    assert totals["match_rate"] == round(2 / 9, 6)


def test_outputs_the_hours_sessions_and_differences(every, tmp_path):
    _, result = every
    written = result.write(tmp_path)
    sessions = pq.read_table(written["sessions"]).to_pylist()
    assert sorted({s["user_id"] for s in sessions}) == [1, 2, 3, 4, 5, 7, 8, 10, 11, 12]  # 11 deferred
    differences = pq.read_table(written["differences"])
    assert differences.num_rows == 9
    assert sorted(differences.column("cause").to_pylist()).count("rule_difference") == 3


def test_deferred_sessions_are_not_compared(tmp_path):
    s = Scenario()
    long = [event(100 + i, 1, 3540 + 55 * i) for i in range(34)]  # runs past the settle horizon
    s.batch += long
    (row,) = stream_sessions(long)
    s.sessions.append({**row, "event_count": 99})  # would be a mismatch if compared
    s.matched(2, [event(1, 2, 60)])
    result = run(s, tmp_path)
    assert result.report.counts["deferred"] == 1 and result.report.counts["mismatch"] == 0
    assert result.report.totals["stream"]["deferred_sessions"] == 1
    assert result.report.status == STATUS_PASSED
    # with a longer settle horizon the same session is compared, and differs
    later = run(s, tmp_path, OPTIONS.replace(settle_minutes=60))
    assert later.report.counts["deferred"] == 0 and later.report.counts["mismatch"] == 1


def test_an_extended_horizon_completes_a_deferred_session_and_any_later_one_agrees(tmp_path):
    """The session of user 1 runs from H + 59 min to H + 1 h 53 min, past the first horizon (H + 1 h 30 min):
    cut there and deferred at first, whole and compared one hour later, and the same at every later horizon."""
    s = Scenario()
    long = [event(100 + i, 1, 3540 + 55 * i) for i in range(60)]
    s.matched(1, long)
    s.matched(2, [event(1, 2, 60)])
    by_extension = {}
    for extension in (0, 1, 2):
        result = run(s, tmp_path, OPTIONS.replace(extension_hours=extension))
        files = result.write(tmp_path / f"out-{extension}")
        rows = {r["user_id"]: r for r in pq.read_table(files["sessions"]).to_pylist()}
        by_extension[extension] = (result.report, rows, files["sessions"].read_bytes())
    first, rows, _ = by_extension[0]
    assert first.counts["deferred"] == 1 and first.counts["matched"] == 1
    assert rows[1]["event_count"] == 34  # up to the horizon: 3540 + 55 * 33 <= 5400 s
    completed, rows, published = by_extension[1]
    assert completed.counts["deferred"] == 0 and completed.counts["matched"] == 2
    assert completed.status == STATUS_PASSED and completed.window["extension_hours"] == 1
    assert rows[1]["event_count"] == 60 and rows[1] == stream_sessions(long)[0] | {"user_id": 1}
    later, _, again = by_extension[2]
    assert later.counts == completed.counts and again == published


def test_late_duplicate_and_rule_only_hour_passes(tmp_path):
    s = Scenario()
    e = [event(1 + i, 1, t) for i, t in enumerate((0, 50, 100))]
    s.batch += e
    s.sessions += stream_sessions([e[0], e[2]])
    s.late.append(late_row(e[1], 1000))
    d = [event(10 + i, 2, t) for i, t in enumerate((200, 210))]
    s.batch += d + [d[0], d[0]]
    (row,) = stream_sessions(d)
    s.sessions.append({**row, "event_count": 4})  # two extra copies counted: still within the raw copies
    r = [event(20, 3, 300), event(21, 3, 310)]
    s.batch += r
    s.sessions += stream_sessions(r[:1])
    s.rejected.append(rejected_row(line(r[1]), FUTURE_REASON, 300))
    result = run(s, tmp_path)
    assert result.report.counts["late"] == result.report.counts["duplicate"] == 1
    assert result.report.counts["rule_difference"] == 1
    assert result.report.status == STATUS_PASSED and result.report.passed


def test_more_stream_copies_than_raw_copies_is_a_mismatch(tmp_path):
    s = Scenario()
    d = [event(10 + i, 2, t) for i, t in enumerate((200, 210))]
    s.batch += d + [d[0]]
    (row,) = stream_sessions(d)
    s.sessions.append({**row, "event_count": 4})
    assert run(s, tmp_path).report.counts["mismatch"] == 1


def test_late_ledger_that_does_not_explain_the_stream_is_a_mismatch(tmp_path):
    s = Scenario()
    e = [event(1 + i, 1, t) for i, t in enumerate((0, 50, 100))]
    s.batch += e
    s.sessions += stream_sessions([e[0]])  # lost two events, the ledger holds only one
    s.late.append(late_row(e[1], 1000))
    assert causes_by_user(run(s, tmp_path).report) == {1: "mismatch"}


def test_a_copy_resent_past_the_dedup_horizon_is_not_taken_out_of_the_batch_session(tmp_path):
    """The producer's resend (resend_fraction / resend_delay_seconds): the original reached the stream on time and
    was counted, the copy arrived after the watermark and went to the late ledger. An id with more raw copies
    than late and rejected ledger rows may or may not have been counted: the late check tries both."""
    s = Scenario()
    # 1: a real late event (150 s) splits the stream's session; the event at 230 s was counted on time and its
    # resent copy is in the ledger too
    e1 = [event(1 + i, 1, t) for i, t in enumerate((100, 150, 200, 230))]
    s.batch += e1 + [e1[3]]
    s.sessions += stream_sessions([e1[0], e1[2], e1[3]])
    s.late += [late_row(e1[1], 900), late_row(e1[3], 1500)]
    # 2: only the resent copy is in the ledger: both sides counted the same events
    e2 = [event(10 + i, 2, t) for i, t in enumerate((300, 310))]
    s.batch += e2 + [e2[1]]
    s.sessions += stream_sessions(e2)
    s.late.append(late_row(e2[1], 1500))
    # 3: both copies of an event were late: the stream never counted it
    e3 = [event(20 + i, 3, t) for i, t in enumerate((400, 450, 500))]
    s.batch += e3 + [e3[1]]
    s.sessions += stream_sessions([e3[0], e3[2]])
    s.late += [late_row(e3[1], 900), late_row(e3[1], 1500)]
    # 4: the first copy was rejected (ahead of the stream's clock then), the resend was late: never counted
    e4 = [event(30 + i, 4, t) for i, t in enumerate((600, 650, 700))]
    s.batch += e4 + [e4[1]]
    s.sessions += stream_sessions([e4[0], e4[2]])
    s.rejected.append(rejected_row(line(e4[1]), FUTURE_REASON, 200))
    s.late.append(late_row(e4[1], 1500))
    # 5: a late event sent twice at once: the stream dropped the second copy as a duplicate (no row anywhere), so
    # the raw copies outnumber the ledger rows though the stream never counted the event
    e5 = [event(40 + i, 5, t) for i, t in enumerate((800, 850, 900))]
    s.batch += e5 + [e5[1]]
    s.sessions += stream_sessions([e5[0], e5[2]])
    s.late.append(late_row(e5[1], 1500))
    # 6: both at once in one session: a resent copy of a counted event and a late event sent twice
    e6 = [event(50 + i, 6, t) for i, t in enumerate((1000, 1050, 1100, 1130))]
    s.batch += e6 + [e6[1], e6[3]]
    s.sessions += stream_sessions([e6[0], e6[2], e6[3]])
    s.late += [late_row(e6[1], 1500), late_row(e6[3], 1900)]
    report = run(s, tmp_path).report
    assert causes_by_user(report) == {1: "late", 3: "late", 4: "late", 5: "late", 6: "late"}
    assert report.counts["matched"] == 1 and report.counts["mismatch"] == 0
    rows = {d["user_id"]: d for d in report.differences}
    assert rows[1]["evidence"]["late_ledger_events"] == 2  # the ledger's rows, the resent copy among them
    assert [s["event_count"] for s in rows[1]["stream"]] == [1, 2]
    # the ledger's distinct event_ids of H, resent copies of counted events included (docs/reconciliation.md)
    assert report.totals["stream"]["late_events"] == 8
    assert report.status == STATUS_PASSED


@pytest.mark.parametrize(
    ("share", "status"), [(0.001, STATUS_FAILED), (0.33, STATUS_FAILED), (0.5, STATUS_PASSED)]
)
def test_pass_fail_threshold(tmp_path, share, status):
    # 2 of 5 compared batch sessions are missing in the stream: 40 % of the sessions, 2 of 7 events
    s = Scenario()
    for user in range(1, 4):
        s.matched(
            user,
            [event(user * 10, user, user * 100), event(user * 10 + 1, user, user * 100 + 5)][: user % 2 + 1],
        )
    s.batch += [event(90, 9, 900), event(91, 8, 950)]
    result = run(s, tmp_path, OPTIONS.replace(max_unexplained_share=share))
    assert result.report.counts["missing_in_stream"] == 2
    assert result.report.status == status


def test_no_stream_output_for_the_hour_is_batch_only(tmp_path):
    s = Scenario()
    s.batch += [event(1, 1, 10), event(2, 2, 20)]
    result = run(s, tmp_path)
    assert result.report.status == STATUS_BATCH_ONLY and result.report.passed
    assert result.report.counts == {"batch_only": 2, "deferred": 0}
    assert result.report.differences == []
    # once the stream is known to have run during the hour, the same inputs are a stream outage
    outage = run(s, tmp_path, OPTIONS.replace(stream_started_at=H - timedelta(days=1)))
    assert outage.report.status == STATUS_FAILED
    assert outage.report.counts["missing_in_stream"] == 2
    before = run(s, tmp_path, OPTIONS.replace(stream_started_at=H + timedelta(hours=1)))
    assert before.report.status == STATUS_BATCH_ONLY


def test_rerun_gives_the_same_report(every, tmp_path):
    scenario, first = every
    again = run(scenario, tmp_path)
    assert again.report.to_json() == first.report.to_json()
    assert again.sessions.equals(first.sessions)


def test_report_differences_limit(tmp_path):
    scenario = every_cause()
    result = run(scenario, tmp_path, OPTIONS.replace(report_differences_limit=2))
    assert len(result.report.differences) == 2 and result.report.differences_total == 9
    assert result.differences.num_rows == 9


def test_options_come_from_settings_and_are_validated(monkeypatch):
    from include.config import Settings

    monkeypatch.setenv("CLICKSTREAM_RECONCILE_SETTLE_MINUTES", "45")
    monkeypatch.setenv("CLICKSTREAM_RECONCILE_MAX_UNEXPLAINED_SHARE", "0.01")
    options = ReconcileOptions.from_settings(Settings())
    assert (options.settle_minutes, options.max_unexplained_share) == (45, 0.01)
    assert Settings().batch_sessions_prefix == "batch/sessions/"
    monkeypatch.setenv("CLICKSTREAM_RECONCILE_MAX_UNEXPLAINED_SHARE", "a lot")
    with pytest.raises(ValueError, match="CLICKSTREAM_RECONCILE_MAX_UNEXPLAINED_SHARE must be a number"):
        Settings()
    with pytest.raises(ValueError, match="max_unexplained_share must be a number in"):
        ReconcileOptions(max_unexplained_share=1.5)
    with pytest.raises(ValueError, match="settle_minutes must be an integer"):
        ReconcileOptions(settle_minutes="30")


def test_a_stream_only_session_of_records_the_batch_quarantined_is_a_rule_difference(tmp_path):
    """The stream restarted after an outage: the batch has the outage's events (no stream session overlaps them)
    and, 40 s later, a record compaction quarantines (user_id as a JSON string) that the stream accepted. Moving
    the quarantined record into the batch merges it with the outage's events, so no moved-records session equals
    the stream's one-event session; every event of that stream session is still one the batch quarantined."""
    s = Scenario()
    outage = [event(1, 8, 100), event(2, 8, 110)]
    odd = dict(event(3, 8, 150), user_id="8")
    s.batch += outage + [odd]
    s.sessions += stream_sessions([odd])
    # the same shape where the stream session also holds an event the batch accepted: not explained by rules
    outage2 = [event(11, 9, 100), event(12, 9, 110)]
    odd2 = dict(event(13, 9, 150), user_id="9")
    extra = event(14, 9, 160)
    s.batch += outage2 + [odd2]
    s.sessions += stream_sessions([odd2, extra])
    report = run(s, tmp_path).report
    by_side = {(d["user_id"], d["batch"] is None): d["cause"] for d in report.differences}
    assert by_side[(8, False)] == "missing_in_stream"
    assert by_side[(8, True)] == "rule_difference"
    assert by_side[(9, True)] == "missing_in_batch"


def test_a_stream_session_with_an_unpaired_surrogate_is_read_and_explained(tmp_path):
    """The producer's escaped_surrogate record: the stream accepts it and its JSON sink (Jackson) writes the
    unpaired surrogate as the escape ``\\ud800``, which DuckDB's JSON reader refuses for the whole file; the
    batch quarantines the record. The hour must still reconcile, the session as a rule difference."""
    s = Scenario()
    odd = event(1, 1, 100, client_event="view_beer_list\ud800")
    s.matched(2, [event(2, 2, 200), event(3, 2, 210)])
    s.batch.append(odd)
    s.sessions += stream_sessions([odd])
    files = s.write(tmp_path)
    assert b"\\ud800" in files["sessions"].read_bytes()
    inputs = read_inputs(files["batch"], files["sessions"], files["late"], files["rejected"])
    # the DAG hands the downloaded sink files to DuckDB as they are (include/reconciliation/s3_io.py)
    inputs = dataclasses.replace(inputs, stream_sessions=[files["sessions"]])
    report = reconcile_hour(H, inputs, OPTIONS).report
    assert causes_by_user(report) == {1: "rule_difference"}
    assert report.counts["matched"] == 1 and report.passed

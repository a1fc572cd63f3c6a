"""``clickstream reconcile``: the report shape, exit codes 0/1/2, and bad input named by file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localdev import cli
from tests.reconciliation.helpers import HOUR_ARG, Scenario, event, every_cause, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def args(files: dict[str, Path], output: Path, *extra: str) -> list[str]:
    return [
        "reconcile",
        "--hour",
        HOUR_ARG,
        "--batch-events",
        str(files["batch"]),
        "--stream-sessions",
        str(files["sessions"]),
        "--stream-late",
        str(files["late"]),
        "--stream-rejected",
        str(files["rejected"]),
        "--output",
        str(output),
        *extra,
    ]


def test_every_cause_through_the_command(tmp_path, capsys):
    scenario = every_cause()
    files = scenario.write(tmp_path)
    code = cli.main(args(files, tmp_path / "report.json"))
    assert code == 1
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) >= {"hour", "passed", "counts", "totals", "differences"}
    assert report["hour"] == "2026-11-27T10:00:00.000Z" and report["passed"] is False
    assert {d["user_id"]: d["cause"] for d in report["differences"]} == {
        user: cause
        for user, cause in scenario.expected.items()
        if cause not in ("matched", "deferred", "not in H")
    }
    assert report["counts"]["deferred"] == 1 and report["counts"]["matched"] == 2
    for d in report["differences"]:
        assert set(d) >= {"user_id", "device_id", "session_start", "cause", "batch", "stream"}
    err = capsys.readouterr().err
    assert "FAILED" in err and "missing_in_stream 1" in err


def test_passing_hour_exits_0_and_the_threshold_is_an_option(tmp_path):
    scenario = every_cause()
    files = scenario.write(tmp_path)
    assert cli.main(args(files, tmp_path / "r.json", "--max-unexplained-share", "0.5")) == 0
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "passed"


def test_settle_minutes_option_moves_the_horizon(tmp_path):
    files = every_cause().write(tmp_path)
    cli.main(args(files, tmp_path / "r.json", "--settle-minutes", "60"))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["window"]["settle_horizon"] == "2026-11-27T12:00:00.000Z"
    assert report["counts"]["deferred"] == 0  # user 11's session ends before 12:00 - gap


def test_stream_rejected_is_optional_and_sessions_can_be_written(tmp_path):
    s = Scenario()
    s.matched(1, [event(1, 1, 10), event(2, 1, 20)])
    files = s.write(tmp_path)
    argv = args(files, tmp_path / "r.json", "--sessions-output", str(tmp_path / "s.parquet"))
    i = argv.index("--stream-rejected")
    del argv[i : i + 2]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["matched"] == 1
    assert (tmp_path / "s.parquet").stat().st_size > 0


def test_the_console_command_runs_as_a_process(tmp_path):
    s = Scenario()
    s.matched(1, [event(1, 1, 10)])
    files = s.write(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "localdev.cli", *args(files, tmp_path / "r.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "PASSED" in done.stderr and json.loads((tmp_path / "r.json").read_text())["passed"] is True


def bad(tmp_path, capsys, **replace) -> str:
    s = Scenario()
    s.matched(1, [event(1, 1, 10)])
    files = s.write(tmp_path)
    files.update(replace)
    assert cli.main(args(files, tmp_path / "r.json")) == 2
    assert not (tmp_path / "r.json").exists()
    return capsys.readouterr().err


def test_missing_file_is_exit_2_naming_it(tmp_path, capsys):
    err = bad(tmp_path, capsys, late=tmp_path / "nope.jsonl")
    assert f"{tmp_path / 'nope.jsonl'}: file does not exist" in err
    err = bad(tmp_path, capsys, batch=tmp_path / "gone.jsonl")
    assert "gone.jsonl: file does not exist" in err


def test_bad_json_line_is_exit_2_naming_file_and_line(tmp_path, capsys):
    sessions = tmp_path / "broken.jsonl"
    sessions.write_text('{"session_id": "x"\n')
    err = bad(tmp_path, capsys, sessions=sessions)
    assert f"{sessions} line 1: not valid JSON" in err


def test_missing_field_is_exit_2_naming_file_line_and_field(tmp_path, capsys):
    s = Scenario()
    s.matched(1, [event(1, 1, 10), event(2, 2, 20)])
    rows = list(s.sessions)
    del rows[1]["event_count"]
    sessions = write_jsonl(tmp_path / "sessions2.jsonl", rows)
    err = bad(tmp_path, capsys, sessions=sessions)
    assert f"{sessions} line 2: field event_count is missing" in err


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"reason": "r", "record": "x"}, "line 1: field arrival_time is missing"),
        (
            {"reason": "r", "record": 5, "arrival_time": "2026-11-27T10:00:00.000Z"},
            "field record must be a JSON string",
        ),
        (
            {"reason": "r", "record": "x", "arrival_time": "2026-11-27 10:00"},
            "field arrival_time must be a timestamp",
        ),
    ],
)
def test_bad_rejected_rows_are_exit_2(tmp_path, capsys, row, message):
    rejected = write_jsonl(tmp_path / "rej.jsonl", [row])
    assert message in bad(tmp_path, capsys, rejected=rejected)


def test_bad_hour_is_exit_2(tmp_path, capsys):
    files = Scenario().write(tmp_path)
    argv = args(files, tmp_path / "r.json")
    argv[argv.index("--hour") + 1] = "2026-11-27T10:30"
    assert cli.main(argv) == 2
    assert "--hour must be the start of an hour" in capsys.readouterr().err


def test_malformed_batch_records_are_quarantined_not_errors(tmp_path):
    """Raw data holds malformed records: like compaction, they are quarantined and counted."""
    s = Scenario()
    s.matched(1, [event(1, 1, 10)])
    s.batch += ["{not json", '{"event_id": 1}']
    files = s.write(tmp_path)
    assert cli.main(args(files, tmp_path / "r.json")) == 0
    totals = json.loads((tmp_path / "r.json").read_text())["totals"]["batch"]
    assert totals["quarantined"] == 2
    assert totals["quarantined_invalid_json"] == 1 and totals["quarantined_missing_field"] == 1

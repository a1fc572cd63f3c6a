"""``make demo``'s terminal: stage lines on the terminal, everything else (even subprocess output) in the log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from localdev.demo_console import DemoConsole, StageFailed


def test_noise_goes_to_the_log_and_stage_lines_to_the_terminal(tmp_path, capfd):
    log = tmp_path / "demo.log"
    log.write_text("an earlier run\n")
    with DemoConsole(log) as ui:
        ui.print("header line")
        with ui.stage("Producer", total=2) as stage:
            print("python stdout noise")
            print("python stderr noise", file=sys.stderr)
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import os; os.write(1, b'child fd 1\\n'); os.write(2, b'child fd 2\\n')",
                ]
            )
            os.write(1, b"raw fd write\n")
            stage.progress("one", completed=1)
            stage.done("2 runs")
        ui.log("a detail for the log")
    print("after the demo")
    out, err = capfd.readouterr()

    text = log.read_text()
    for noise in ("python stdout noise", "python stderr noise", "child fd 1", "child fd 2", "raw fd write"):
        assert noise in text and noise not in out + err
    assert "[demo] a detail for the log" in text and "a detail" not in out
    assert "✓ Producer" in out and "2 runs" in out and "header line" in out
    assert out.rstrip().endswith("after the demo")  # fds 1 and 2 are restored
    assert (tmp_path / "demo.previous.log").read_text() == "an earlier run\n"
    assert "an earlier run" not in text


def test_a_failed_stage_is_red_and_raises(tmp_path, capfd):
    with DemoConsole(tmp_path / "demo.log") as ui:
        with pytest.raises(StageFailed, match="3 sessions MISSING"):
            with ui.stage("Streamed sessions") as stage:
                raise stage.fail("3 sessions MISSING")
        with pytest.raises(ZeroDivisionError):
            with ui.stage("Compaction"):
                1 / 0  # noqa: B018
        with ui.stage("Reconciliation") as stage:
            stage.warn("FAILED: missing_in_stream 12")
    out = capfd.readouterr().out
    assert "✗ Streamed sessions" in out and "3 sessions MISSING" in out
    assert "✗ Compaction" in out and "ZeroDivisionError: division by zero" in out
    assert "! Reconciliation" in out
    assert ui.warnings == ["Reconciliation: FAILED: missing_in_stream 12"]


def test_verbose_streams_the_log_to_the_terminal(tmp_path, capfd):
    with DemoConsole(tmp_path / "demo.log", verbose=True) as ui:
        with ui.stage("Setup") as stage:
            subprocess.run([sys.executable, "-c", "print('task log line from a child')"])
            stage.done("ok")
    out = capfd.readouterr().out
    assert "task log line from a child" in out and "✓ Setup" in out


def test_the_summary_table_has_a_row_per_hour_with_each_run_the_repair_and_the_alert(tmp_path):
    import io
    from collections import Counter
    from datetime import UTC, datetime

    from rich.console import Console

    from localdev.demo import DemoRun, HourResult, summary_table

    a, b = datetime(2026, 11, 29, 1, tzinfo=UTC), datetime(2026, 11, 29, 2, tzinfo=UTC)
    totals = {"match_rate": 0.43, "batch": {"sessions": 1459}}
    failed = {
        "status": "failed",
        "counts": {"matched": 628, "missing_in_stream": 605, "late": 0},
        "totals": totals,
    }
    repaired = dict(failed, status="repaired", repair={"previous_status": "failed", "repaired_by_batch": 605})
    passed = {
        "status": "passed",
        "counts": {"matched": 649, "late": 136},
        "totals": dict(totals, match_rate=0.82),
    }
    alert = "The reconciliation of hour 2026-11-29T02:00:00.000Z failed: 605 sessions\nmore lines"
    run = DemoRun(
        hours={
            "A": HourResult(a, "late", reports=[passed]),
            "B": HourResult(b, "outage", reports=[failed, repaired], alert=alert),
        },
        by_kind=Counter(valid=10, late=2, duplicate=1, invalid_json=3),
    )
    console = Console(width=220, record=True, file=io.StringIO())
    console.print(summary_table(run, tmp_path / "demo.log"))
    out = console.export_text()
    assert "reconciliation A 01:00" in out and "passed: matched 649, late 136 (match rate 82.00%)" in out
    assert "reconciliation B 02:00" in out and "failed → repaired: matched 628, missing_in_stream 605" in out
    assert "repaired by batch: 605 sessions" in out
    assert "alert received" in out and "failed: 605 sessions" in out and "more lines" not in out
    assert "batch sessions" in out and "2,918" in out  # A's and B's final reports
    assert "3 malformed" in out and "(2 late)" in out

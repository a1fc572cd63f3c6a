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

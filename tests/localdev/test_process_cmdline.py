"""``localdev.processes.cmdline``: the one reader of a live process's command line (stack, endpoint, Flink
runner), checked on real processes: a running child, a zombie, and a PID that is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from localdev.processes import alive, cmdline, matches


def test_a_running_process_answers_its_argv():
    marker = f"cmdline-marker-{os.getpid()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        deadline = time.monotonic() + 10
        while marker not in (cmdline(child.pid) or []) and time.monotonic() < deadline:
            time.sleep(0.01)  # between fork and exec the child still has the parent's command line
        assert cmdline(child.pid) == [sys.executable, "-c", "import time; time.sleep(30)", marker]
        assert matches(child.pid, [marker, "time.sleep"])
        assert not matches(child.pid, [marker, "another-marker"])
    finally:
        child.kill()
        child.wait()


def test_a_zombie_and_a_reaped_process_have_none():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while cmdline(child.pid) is not None and time.monotonic() < deadline:
        time.sleep(0.01)  # exited but not yet waited for: a zombie
    assert cmdline(child.pid) is None and not alive(child.pid)
    child.wait()
    assert cmdline(child.pid) is None

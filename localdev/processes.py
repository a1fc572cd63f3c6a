"""Recognise, signal and wait for the local stack's background processes, by PID, without killing strangers.

A recorded PID is signalled only after checking that the live process behind it is still the one that was
started (its command line holds the expected markers, and, where readable, its environment names the same
home directory), so a recycled PID is never touched. Components run as process-group leaders
(``start_new_session=True``), so one signal to the group also reaches their workers and task processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def cmdline(pid: int) -> list[str] | None:
    """The command line of a live, non-zombie process, or None (gone, a zombie, or unreadable).

    The one place the stack, the local endpoint and the Flink runner read it, before trusting a recorded PID.
    A live process may have an empty command line (a kernel thread, or one in the middle of exiting): ``[]``.
    """
    if Path("/proc/self").exists():  # Linux: no /proc entry means no process
        proc = Path(f"/proc/{pid}")
        try:
            if "\nState:\tZ" in (proc / "status").read_text():
                return None
            raw = (proc / "cmdline").read_bytes()
        except OSError:
            return None
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    try:
        out = subprocess.run(["ps", "-o", "stat=,command=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return None
    line = out.stdout.strip()
    if out.returncode != 0 or not line or line.startswith("Z"):
        return None
    return line.split()[1:]


def environ(pid: int) -> dict[str, str] | None:
    """The environment a process was started with (Linux, same user or root), or None when unreadable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            env[key] = value
    return env


def alive(pid: int) -> bool:
    return cmdline(pid) is not None


def matches(pid: int | None, markers: Iterable[str], env: dict[str, str] | None = None) -> bool:
    """True when ``pid`` is alive, every marker occurs in its command line and ``env`` items in its environment.

    A marker matches a whole argument or a part of one (Airflow rewrites its process titles, e.g.
    ``airflow scheduler -- DagFileProcessorManager``, so whole-argument matching would miss them).
    """
    if pid is None or pid <= 0:
        return False
    cmd = cmdline(pid)
    if not cmd:
        return False
    joined = " ".join(cmd)
    if not all(marker in joined for marker in markers):
        return False
    if env:
        # setproctitle (Airflow's retitled processes) may overwrite the environment block: a key that is
        # missing cannot be checked, a key with another value proves the process is someone else's.
        seen = environ(pid) or {}
        if any(key in seen and seen[key] != value for key, value in env.items()):
            return False
    return True


def group_members(pgid: int) -> list[int]:
    """Live, non-zombie PIDs in process group ``pgid``."""
    members = []
    proc = Path("/proc")
    if proc.exists():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # Fields after the command name (which may contain spaces) start after the last ')'.
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
        return members
    out = subprocess.run(["ps", "-A", "-o", "pid=,pgid=,stat="], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and int(parts[1]) == pgid and not parts[2].startswith("Z"):
            members.append(int(parts[0]))
    return members


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): a PID and its start time name one process for good."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every live descendant of ``pid``, whichever process group or session it is in."""
    children: dict[int, list[int]] = {}
    for other in all_pids():
        fields = _stat(other)
        if fields and len(fields) > 1 and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(other)
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        started = start_time(child)
        if started is not None:
            found.append((child, started))
        todo.extend(children.get(child, ()))
    return found


def same_process(pid: int, started: int) -> bool:
    return alive(pid) and start_time(pid) == started


def all_pids() -> list[int]:
    proc = Path("/proc")
    if proc.exists():
        return [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()]
    out = subprocess.run(["ps", "-A", "-o", "pid="], capture_output=True, text=True)
    return [int(line) for line in out.stdout.split()]


def signal_group(pgid: int, sig: int, group: bool = True) -> None:
    """Send ``sig`` to a process group (or one process); already gone is fine."""
    try:
        (os.killpg if group else os.kill)(pgid, sig)
    except ProcessLookupError:
        pass


def wait_group(pgid: int, timeout: float) -> bool:
    """Wait until process group ``pgid`` is empty; SIGKILL what is left after ``timeout`` s (True if so).

    The caller has checked that the group (its leader, or with the leader gone its members) is ours.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_members(pgid):
            return False
        time.sleep(0.1)
    signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def wait_pid(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` is gone; SIGKILL it after ``timeout`` s (True if so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return False
        time.sleep(0.1)
    signal_group(pid, signal.SIGKILL, group=False)
    return True


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"

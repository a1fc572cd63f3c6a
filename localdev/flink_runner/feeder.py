"""The runner's spool: writers drop files into ``<spool>/inbox``, the feeder hands them to Flink one file at a time.

Files read out of arrival order make whole files late, so the feeder concatenates the inbox, in name (= arrival)
order, into one new file under ``<spool>/flink``, and hands over the next only once the job has picked up the
last one (:mod:`localdev.file_pickup`): the file source never discovers two files at once. A timer alone does not
ensure that: when the source's directory scan runs late (a loaded machine, a JVM starting), two ticks' files are
listed together and may be read in the wrong order, so an earlier file's events come out late (the likely cause
of a savepoint test that failed now and then under load).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from localdev.file_pickup import atime_tracks_reads, mark_unread, was_read


def spool_inbox(spool_dir: str | os.PathLike) -> Path:
    """Where writers drop JSON-lines files (see :func:`spool_events`)."""
    return Path(spool_dir) / "inbox"


def spool_source(spool_dir: str | os.PathLike) -> Path:
    """The directory the Flink file source monitors (filled only by the feeder)."""
    return Path(spool_dir) / "flink"


_spool_counter = itertools.count()


def spool_events(spool_dir: str | os.PathLike, records: Iterable[str | bytes | Mapping[str, Any]]) -> Path:
    """Atomically add one file of records (JSON text or dicts, one per line) to the inbox; returns its path.

    File names sort in the order of the calls (nanosecond clock plus a counter), which is the order the feeder
    hands them to Flink: that is the arrival order.
    """
    inbox = spool_inbox(spool_dir)
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{next(_spool_counter):06d}-{os.getpid()}.jsonl"
    tmp = inbox / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        for record in records:
            if isinstance(record, Mapping):
                data = json.dumps(record, ensure_ascii=False).encode()
            elif isinstance(record, str):
                data = record.encode()
            elif isinstance(record, bytes):
                data = record
            else:
                raise TypeError(
                    f"a spool record must be str, bytes or a mapping, got {type(record).__name__}"
                )
            handle.write(data.rstrip(b"\n") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, inbox / name)
    return inbox / name


class SpoolFeeder(threading.Thread):
    """Moves inbox files, in name order, into one new source file per tick, once the job has picked up the last
    one (see the module docstring; where atime does not track reads, one file per tick)."""

    def __init__(self, spool_dir: Path, interval_s: float) -> None:
        super().__init__(name="spool-feeder", daemon=True)
        self.inbox = spool_inbox(spool_dir)
        self.target = spool_source(spool_dir)
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.error: str | None = None
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.target.mkdir(parents=True, exist_ok=True)
        existing = [
            int(p.stem.split("-")[1]) for p in self.target.glob("part-*.jsonl") if p.stem[5:].isdigit()
        ]
        self.sequence = max(existing, default=0)
        self.atime_ok = atime_tracks_reads(self.inbox)  # probes in the inbox, which Flink does not read
        #: The last file handed over (a restored job may not have read it yet).
        self.last: Path | None = self.target / self.part_name(self.sequence) if existing else None

    @staticmethod
    def part_name(sequence: int) -> str:
        return f"part-{sequence:010d}.jsonl"

    def feed_once(self) -> Path | None:
        """Hand the inbox over as the next source file; None when it is empty or the job has not yet picked up
        the last file."""
        if self.atime_ok and self.last is not None and not was_read(self.last):
            return None
        files = sorted(p for p in self.inbox.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
        if not files:
            return None
        self.sequence += 1
        name = self.part_name(self.sequence)
        tmp = self.target / f".{name}.tmp"
        with open(tmp, "wb") as out:
            for path in files:
                data = path.read_bytes()
                if data and not data.endswith(b"\n"):
                    data += b"\n"
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        mark_unread(tmp)
        os.replace(tmp, self.target / name)
        for path in files:
            path.unlink()
        self.last = self.target / name
        return self.last

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.feed_once()
            except OSError as exc:  # reported in the status; the job itself keeps running
                self.error = f"spool feeder: {exc}"

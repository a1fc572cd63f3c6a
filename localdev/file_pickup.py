"""Whether Flink's file source has started reading a file, told by the file's access time.

Flink's continuous filesystem source lists its directory every ``source.monitor-interval`` and does not read the
new files of one listing in name or arrival order; the records of a later file then push the watermark past an
earlier file's events, which become late. So whoever hands files to a job (the local kinesisanalyticsv2's spool,
the sessions runner's feeder) makes the next file visible only once the job has *picked up* the previous one:
a file is handed over with atime set to :data:`UNREAD_ATIME`, and the job's first ``read()`` moves it to the
present (relatime updates an atime older than the mtime). Where atime does not move (a ``noatime`` mount,
:func:`atime_tracks_reads` is false) the callers fall back to spacing files in time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: atime given to a freshly handed-over file; any read moves it to the present.
UNREAD_ATIME = 1.0


def atime_tracks_reads(directory: Path) -> bool:
    """True when reading a file in ``directory`` moves its atime forward (not a noatime mount)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".atime-probe-", dir=directory)
    try:
        os.write(fd, b"probe\n")
        os.close(fd)
        mark_unread(Path(probe))
        with open(probe, "rb") as fh:
            fh.read()
        return os.stat(probe).st_atime > UNREAD_ATIME + 1
    finally:
        os.unlink(probe)


def mark_unread(path: Path) -> None:
    """Set ``path``'s atime to :data:`UNREAD_ATIME` (keeping its mtime): its next read shows as a pickup."""
    os.utime(path, (UNREAD_ATIME, os.stat(path).st_mtime))


def was_read(path: Path) -> bool:
    """True once ``path`` (marked unread) has been read; a file that is gone counts as read."""
    try:
        return os.stat(path).st_atime > UNREAD_ATIME + 1
    except FileNotFoundError:
        return True

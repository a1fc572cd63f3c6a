"""The spool: JSON-lines files the local Flink job's filesystem source reads, published one at a time.

Why one at a time. Flink's continuous filesystem source lists the directory every ``source.monitor-interval``
and queues the new files it finds; with several files queued at once it does not read them in name or arrival
order, and the records of a later file push the watermark past the events of an earlier one, which are then
dropped as late (measured). So a new file is made visible only after the job has *picked up* the previous one
(started reading it): from then on the single reader (parallelism 1) finishes that file before it asks for the
next, so files are read in publication order and records in arrival order.

*Picked up* is read from the file's access time (:mod:`localdev.file_pickup`); the companion never reads a
published file. Where atime does not move (a ``noatime`` mount; probed at start), publication falls back to
spacing files by twice the monitor interval, which keeps each directory listing to one new file.

The sessions runner (:mod:`localdev.flink_runner`) has its own way in: an ``inbox`` that its feeder
concatenates into the source directory (``flink/``), the next file only once the job has picked up the last.
The companion publishes into ``flink/`` itself instead and leaves the inbox empty (its manifests and snapshots
need to know each file).

Crash safety and snapshots. Every published file has a manifest (``manifests/<epoch>/<seq>.json``) holding the
bridge's Kinesis positions *after* that file, written before the file appears; the bridge resumes from the
manifest of the newest visible file, so the spool never loses or repeats a record. A snapshot records the set of
visible files (ranges of sequence numbers). Restoring it makes exactly that set visible again: files published
after it are *parked* (moved out of the source directory, kept so a later snapshot can still be restored) and the
bridge resumes from the snapshot's newest file, which is consistent with the savepoint's source state (the
savepoint knows which of those files it has read). Sequence numbers are never reused inside an epoch. An
*epoch* is one spool directory: starting without restoring a snapshot opens a new, empty one, because the
Flink source identifies files by path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from localdev.aws.firehose.streams import atomic_write_json
from localdev.file_pickup import atime_tracks_reads, mark_unread, was_read

FILE_SUFFIX = ".jsonl"


class SpoolError(RuntimeError):
    """The spool cannot give what was asked (e.g. a snapshot's files are gone); the message says which."""


def to_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """[[lo, hi], ...] covering the sorted sequence numbers (a snapshot stores thousands of files compactly)."""
    out: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def from_ranges(ranges: Iterable[Iterable[int]]) -> set[int]:
    out: set[int] = set()
    for lo, hi in ranges:
        out.update(range(int(lo), int(hi) + 1))
    return out


class Spool:
    """One application's spool: epochs of visible files, parked files, manifests, and the publication rule."""

    def __init__(self, root: Path, monitor_interval_s: float):
        self.root = root
        self.monitor_interval_s = monitor_interval_s
        self.lock = threading.RLock()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self.atime_ok = atime_tracks_reads(self.root / "tmp")
        self.state_path = self.root / "spool.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        )
        self.state.setdefault("epoch", 0)
        self.state.setdefault("epochs", {})
        if self.state["epoch"] == 0:
            self.new_epoch()
        self._recover()

    # -- layout ---------------------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self.state["epoch"])

    def epoch_dir(self, epoch: int | None = None) -> Path:
        """The runner's spool directory of ``epoch`` (default: the current one); the source reads ``flink/``."""
        return self.root / "epochs" / f"{self.epoch if epoch is None else epoch:06d}"

    def source_dir(self, epoch: int | None = None) -> Path:
        """The directory the Flink source monitors for ``epoch`` (the runner's ``spool_source``)."""
        return self.epoch_dir(epoch) / "flink"

    def _parked_dir(self, epoch: int) -> Path:
        return self.root / "parked" / f"{epoch:06d}"

    def _manifest_dir(self, epoch: int) -> Path:
        return self.root / "manifests" / f"{epoch:06d}"

    @staticmethod
    def file_name(seq: int) -> str:
        return f"{seq:012d}{FILE_SUFFIX}"

    def _save(self) -> None:
        atomic_write_json(self.state_path, self.state)

    # -- epochs --------------------------------------------------------------------------------------------
    def new_epoch(self) -> int:
        """Open an empty source directory (a start that restores no snapshot); returns its number."""
        with self.lock:
            epoch = max((int(e) for e in self.state["epochs"]), default=0) + 1
            self.state["epochs"][str(epoch)] = {"created": time.time(), "next_seq": 1}
            self.state["epoch"] = epoch
            self.source_dir(epoch).mkdir(parents=True, exist_ok=True)
            self._manifest_dir(epoch).mkdir(parents=True, exist_ok=True)
            self._save()
            return epoch

    def epoch_created(self, epoch: int | None = None) -> float:
        return float(self.state["epochs"][str(self.epoch if epoch is None else epoch)]["created"])

    def prune(self, keep: Iterable[int]) -> list[int]:
        """Delete epochs other than the current one and ``keep`` (those that snapshots still reference)."""
        keep_set = {int(e) for e in keep} | {self.epoch}
        removed = []
        with self.lock:
            for epoch in [int(e) for e in self.state["epochs"]]:
                if epoch in keep_set:
                    continue
                for path in (self.epoch_dir(epoch), self._parked_dir(epoch), self._manifest_dir(epoch)):
                    shutil.rmtree(path, ignore_errors=True)
                del self.state["epochs"][str(epoch)]
                removed.append(epoch)
            self._save()
        return removed

    # -- files ---------------------------------------------------------------------------------------------
    def visible(self, epoch: int | None = None) -> list[int]:
        directory = self.source_dir(epoch)
        if not directory.is_dir():
            return []
        return sorted(int(p.name[: -len(FILE_SUFFIX)]) for p in directory.glob(f"*{FILE_SUFFIX}"))

    def last_published(self) -> int | None:
        seqs = self.visible()
        return seqs[-1] if seqs else None

    def manifest(self, seq: int, epoch: int | None = None) -> dict:
        return json.loads(
            (self._manifest_dir(self.epoch if epoch is None else epoch) / f"{seq:012d}.json").read_text()
        )

    def positions(self) -> dict:
        """The bridge's resume point: the positions after the newest visible file (empty: the initial ones)."""
        last = self.last_published()
        return self.manifest(last)["positions"] if last is not None else {}

    def publish(self, lines: list[bytes], positions: dict) -> int:
        """Write ``lines`` as the next file, then make it visible; returns its sequence number."""
        if not lines:
            raise ValueError("refusing to publish an empty spool file")
        with self.lock:
            meta = self.state["epochs"][str(self.epoch)]
            seq = int(meta["next_seq"])
            meta["next_seq"] = seq + 1
            self._save()  # a sequence number is never handed out twice, even across a crash
            fd, tmp = tempfile.mkstemp(prefix=f".{seq:012d}.", dir=self.root / "tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    for line in lines:
                        fh.write(line)
                        fh.write(b"\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                mark_unread(Path(tmp))
                manifest = {
                    "seq": seq,
                    "records": len(lines),
                    "positions": positions,
                    "published": time.time(),
                }
                atomic_write_json(self._manifest_dir(self.epoch) / f"{seq:012d}.json", manifest)
                os.replace(tmp, self.source_dir() / self.file_name(seq))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            return seq

    def picked_up(self, seq: int) -> bool:
        """True once the job has started reading file ``seq`` (see the module docstring)."""
        path = self.source_dir() / self.file_name(seq)
        if self.atime_ok or not path.exists():  # parked or pruned: nothing waits for it
            return was_read(path)
        published = self.manifest(seq).get("published", os.stat(path).st_mtime)
        return time.time() - published >= 2 * self.monitor_interval_s + 0.5

    def mark_unread(self, seq: int) -> None:
        """Wait for ``seq`` to be picked up again (a snapshot taken before the job had started reading it)."""
        path = self.source_dir() / self.file_name(seq)
        if path.exists():
            mark_unread(path)

    def wait_picked_up(self, seq: int, timeout: float, stop: threading.Event | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while not self.picked_up(seq):
            if time.monotonic() >= deadline or (stop is not None and stop.is_set()):
                return False
            time.sleep(0.05)
        return True

    # -- snapshots -----------------------------------------------------------------------------------------
    def snapshot_state(self) -> dict:
        """What a snapshot must remember of the spool: the epoch and its visible files."""
        with self.lock:
            return {"epoch": self.epoch, "visible": to_ranges(self.visible())}

    def restore(self, saved: dict) -> None:
        """Make the saved epoch current with exactly the saved files visible (see the module docstring)."""
        epoch = int(saved["epoch"])
        wanted = from_ranges(saved["visible"])
        with self.lock:
            if str(epoch) not in self.state["epochs"]:
                raise SpoolError(f"spool epoch {epoch} of the snapshot no longer exists")
            source, parked = self.source_dir(epoch), self._parked_dir(epoch)
            missing = [
                s
                for s in wanted
                if not (source / self.file_name(s)).exists() and not (parked / self.file_name(s)).exists()
            ]
            if missing:
                raise SpoolError(
                    f"spool files {to_ranges(missing)} of epoch {epoch} that the snapshot read are gone"
                )
            parked.mkdir(parents=True, exist_ok=True)
            for seq in self.visible(epoch):
                if seq not in wanted:
                    os.replace(source / self.file_name(seq), parked / self.file_name(seq))
            for seq in wanted:
                path = parked / self.file_name(seq)
                if path.exists():
                    os.replace(path, source / self.file_name(seq))
            self.state["epoch"] = epoch
            self._save()

    # -- recovery ------------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Drop the leftovers of a crash inside :meth:`publish` (a manifest whose file never appeared)."""
        with self.lock:
            for leftover in (self.root / "tmp").glob(".*"):
                leftover.unlink(missing_ok=True)
            for epoch in [int(e) for e in self.state["epochs"]]:
                mdir = self._manifest_dir(epoch)
                if not mdir.is_dir():
                    continue
                for path in mdir.glob("*.json"):
                    name = self.file_name(int(path.stem))
                    if (
                        not (self.source_dir(epoch) / name).exists()
                        and not (self._parked_dir(epoch) / name).exists()
                    ):
                        path.unlink()

"""DirectPut: the on-disk spool of accepted records, and the delivery source that reads it back.

PutRecord(Batch) answers only after its records are in the spool, so a killed companion redelivers them.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from localdev.aws.firehose.sources import GET_RECORDS_LIMIT, SourceRecord

_FRAME = struct.Struct(">QI")
SEGMENT_ROLL_BYTES = 16 * 1024 * 1024


class Spool:
    """Append-only segment files holding accepted DirectPut records until they are delivered.

    PutRecord answers only after the record is in the spool (written and flushed to the OS), so a killed
    companion redelivers it on restart. Positions are (segment, offset) pairs; segments wholly behind the
    checkpoint are deleted.
    """

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.committed: dict[int, int] = {}
        for path in sorted(self.dir.glob("*.seg")):
            seg = int(path.stem)
            self.committed[seg] = self._complete_length(path)
        # Never append after a possibly torn tail: always start a fresh segment.
        self.active = max(self.committed, default=0) + 1
        self.committed[self.active] = 0
        self._fh = open(self._path(self.active), "ab")  # noqa: SIM115 - kept open for appends

    def _path(self, seg: int) -> Path:
        return self.dir / f"{seg:012d}.seg"

    @staticmethod
    def _complete_length(path: Path) -> int:
        data = path.read_bytes()
        pos = 0
        while pos + _FRAME.size <= len(data):
            _, length = _FRAME.unpack_from(data, pos)
            if pos + _FRAME.size + length > len(data):
                break
            pos += _FRAME.size + length
        return pos

    def append(self, records: Iterable[bytes], arrival_ms: int) -> None:
        payload = b"".join(_FRAME.pack(arrival_ms, len(r)) + r for r in records)
        with self.lock:
            self._fh.write(payload)
            self._fh.flush()
            self.committed[self.active] += len(payload)
            if self.committed[self.active] >= SEGMENT_ROLL_BYTES:
                self._roll()

    def _roll(self) -> None:
        self._fh.close()
        self.active += 1
        self.committed[self.active] = 0
        self._fh = open(self._path(self.active), "ab")  # noqa: SIM115

    def read(self, position: tuple[int, int], max_records: int) -> list[SourceRecord]:
        seg, offset = position
        out: list[SourceRecord] = []
        while len(out) < max_records:
            with self.lock:
                end = self.committed.get(seg)
                later = [s for s in self.committed if s > seg]
            if end is None:
                if not later:
                    break
                seg, offset = min(later), 0
                continue
            if offset >= end:
                if not later:
                    break
                seg, offset = min(later), 0
                continue
            with open(self._path(seg), "rb") as fh:
                fh.seek(offset)
                data = fh.read(end - offset)
            pos = 0
            while pos < len(data) and len(out) < max_records:
                arrival_ms, length = _FRAME.unpack_from(data, pos)
                start = pos + _FRAME.size
                pos = start + length
                out.append(SourceRecord(data[start:pos], arrival_ms, "spool", (seg, offset + pos)))
            offset += pos
        return out

    def release_before(self, position: tuple[int, int]) -> None:
        """Delete segments wholly before the checkpointed position."""
        seg, _ = position
        with self.lock:
            for old in [s for s in self.committed if s < seg and s != self.active]:
                self._path(old).unlink(missing_ok=True)
                del self.committed[old]

    def first_position(self) -> tuple[int, int]:
        with self.lock:
            return (min(self.committed), 0)

    def close(self) -> None:
        with self.lock:
            self._fh.close()

    def destroy(self) -> None:
        self.close()
        for path in self.dir.glob("*.seg"):
            path.unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:
            pass


class SpoolSource:
    """The delivery source of a DirectPut stream: reads the spool from the checkpointed position."""

    def __init__(self, spool: Spool, checkpoint: dict):
        self.spool = spool
        saved = checkpoint.get("spool")
        self.position: tuple[int, int] = tuple(saved) if saved else spool.first_position()  # type: ignore[assignment]

    def poll(self) -> list[SourceRecord]:
        records = self.spool.read(self.position, GET_RECORDS_LIMIT)
        if records:
            self.position = records[-1].position
        return records

    def checkpoint(self, positions: dict[str, Any], previous: dict) -> dict:
        pos = positions.get("spool")
        return {"spool": list(pos)} if pos is not None else dict(previous)

    def pending_finish(self) -> bool:
        return False

    def saved(self, checkpoint: dict) -> None:
        if checkpoint.get("spool"):
            self.spool.release_before(tuple(checkpoint["spool"]))

    def lag(self) -> dict[str, Any]:
        return {"spool_position": list(self.position)}

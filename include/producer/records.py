"""The producer's ground truth: exactly the records sent for an interval, each tagged with what it is.

Tests and the reconciliation compare the pipeline's output against this, so it keeps the exact bytes, the
parsed event of every good record and the reason code of every malformed one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from include.producer.params import MALFORMED_KINDS, ProducerParams

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MALFORMED = frozenset(MALFORMED_KINDS)


def ms_to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


class ProducedRecord(NamedTuple):
    """One Kinesis record as sent.

    ``kind`` is ``valid`` (on time), ``late`` (sent ``late_delay_seconds`` after its client_timestamp),
    ``duplicate`` (a second send of a valid or late record right after it: same bytes, same event_id),
    ``resent`` (a copy of a valid or late record sent ``resend_delay_seconds`` after it, possibly in a later
    interval) or a malformed reason code. ``event`` is the parsed event for the first four and None for
    malformed records. ``event_id`` is
    the id a parser finds in ``data``; None when the record has none (e.g. invalid JSON, missing event_id).
    ``event_ms`` is the event time of the underlying event, ``emit_ms`` when it is sent (both epoch ms).
    A NamedTuple because hundreds of thousands are built per interval and a frozen dataclass is 3x slower.
    """

    data: bytes
    partition_key: str
    event: dict | None
    kind: str
    event_id: str | None
    event_ms: int
    emit_ms: int

    @property
    def is_malformed(self) -> bool:
        return self.kind in _MALFORMED


@dataclass(frozen=True)
class ProducedBatch:
    """Records sent for ``[start, end)`` in send order; event dicts are shared, treat them as read-only."""

    params: ProducerParams
    start: datetime
    end: datetime
    records: list[ProducedRecord] = field(repr=False)
    #: Simulated sessions that found no free user (only near saturation); sessions, not records.
    dropped_sessions: int = 0

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ProducedRecord]:
        return iter(self.records)

    def _unique(self, kinds: frozenset[str]) -> list[dict]:
        seen: set[str] = set()
        out: list[dict] = []
        for r in self.records:
            if r.kind in kinds and r.event_id not in seen:
                seen.add(r.event_id)
                out.append(r.event)
        return out

    def valid_events(self) -> list[dict]:
        """Unique valid events first sent in this interval, late ones included.

        Copies are not new events: a duplicate is always sent with its original, and a resent copy's original
        was sent ``resend_delay_seconds`` earlier (in this interval or in an earlier one).
        """
        return self._unique(frozenset(("valid", "late")))

    def on_time_events(self) -> list[dict]:
        """Valid events whose client_timestamp lies in [start, end) and that were sent on time."""
        return self._unique(frozenset(("valid",)))

    def late_events(self) -> list[dict]:
        """Valid events sent in this interval although their client_timestamp is older by the delay."""
        return self._unique(frozenset(("late",)))

    def event_ids(self) -> list[str]:
        return [e["event_id"] for e in self.valid_events()]

    def malformed(self) -> list[ProducedRecord]:
        return [r for r in self.records if r.kind in _MALFORMED]

    def duplicates(self) -> list[ProducedRecord]:
        """Copies sent right after their original (within any stream's dedup horizon)."""
        return [r for r in self.records if r.kind == "duplicate"]

    def resent(self) -> list[ProducedRecord]:
        """Copies sent ``resend_delay_seconds`` after their original (past the stream's dedup horizon by
        default)."""
        return [r for r in self.records if r.kind == "resent"]

    def counts_by_kind(self) -> dict[str, int]:
        return dict(sorted(Counter(r.kind for r in self.records).items()))

    def total_bytes(self) -> int:
        return sum(len(r.data) for r in self.records)

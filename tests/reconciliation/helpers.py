"""Hand-made reconciliation inputs: events relative to hour H, the stream's rows built with the Python reference.

Each scenario user has one cause, so one run checks them all (like tests/sessions/golden.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.sessions.contract import SESSION_FIELDS, SessionContract, iso_ms
from localdev import reference

H = datetime(2026, 11, 27, 10, tzinfo=UTC)
H_MS = int(H.timestamp() * 1000)
HOUR_ARG = "2026-11-27T10"
CONTRACT = SessionContract()


def eid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def event(
    n: int,
    user_id: int,
    offset_s: float,
    client_event: str = "view_beer_list",
    device_id: str = "mobile",
    countrycode: str = "IE",
) -> dict[str, Any]:
    """A valid event ``offset_s`` seconds after H (negative: before H)."""
    return {
        "event_id": eid(n),
        "user_id": user_id,
        "device_id": device_id,
        "client_event": client_event,
        "client_timestamp": iso_ms(H_MS + round(offset_s * 1000)),
        "countrycode": countrycode,
    }


def line(obj: dict | str) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def stream_sessions(records: Iterable[dict | str]) -> list[dict[str, Any]]:
    """The sessions the stream emits over these records (reference rules: what the stream accepts, deduplicated)."""
    checked = reference.check_records([line(r) for r in records], CONTRACT, now_ms=H_MS + 86_400_000)
    return reference.sessionize(checked.events, CONTRACT)


def late_row(obj: dict, arrival_offset_s: float) -> dict[str, Any]:
    arrival = H_MS + round(arrival_offset_s * 1000)
    return {**obj, "watermark_at": iso_ms(arrival - 5000), "arrival_time": iso_ms(arrival)}


def rejected_row(record: str, reason: str, arrival_offset_s: float) -> dict[str, Any]:
    return {"reason": reason, "record": record, "arrival_time": iso_ms(H_MS + round(arrival_offset_s * 1000))}


def write_jsonl(path: Path, rows: Iterable[dict | str]) -> Path:
    path.write_text("".join(line(r) + "\n" for r in rows), encoding="utf-8")
    return path


@dataclass
class Scenario:
    """Raw batch records and the stream's three outputs; ``expected`` maps user_id to its row's cause."""

    batch: list[dict | str] = field(default_factory=list)
    sessions: list[dict] = field(default_factory=list)
    late: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    expected: dict[int, str] = field(default_factory=dict)

    def matched(self, user_id: int, events: list[dict], cause: str = "matched") -> None:
        """Both sides saw the same events."""
        self.batch += events
        self.sessions += stream_sessions(events)
        self.expected[user_id] = cause

    def write(self, directory: Path) -> dict[str, Path]:
        for row in self.sessions:
            assert list(row) == list(SESSION_FIELDS)
        return {
            "batch": write_jsonl(directory / "events.jsonl", self.batch),
            "sessions": write_jsonl(directory / "sessions.jsonl", self.sessions),
            "late": write_jsonl(directory / "late.jsonl", self.late),
            "rejected": write_jsonl(directory / "rejected.jsonl", self.rejected),
        }


FUTURE_REASON = "client_timestamp is further ahead of the processing time than allowed"


def every_cause() -> Scenario:
    """One user per cause (and the hour-boundary cases); see the comments for how each difference arises."""
    s = Scenario()
    n = iter(range(1, 10_000))
    # 1 matched
    s.matched(1, [event(next(n), 1, t) for t in (10, 20, 30)])
    # 2 late: the middle event reached the stream after the watermark; without it the session splits in two
    e2 = [event(next(n), 2, t) for t in (100, 150, 200)]
    s.batch += e2
    s.sessions += stream_sessions([e2[0], e2[2]])
    s.late.append(late_row(e2[1], 900))
    s.expected[2] = "late"
    # 3 late: the session's only event was late, so the stream has no session at all
    e3 = event(next(n), 3, 300)
    s.batch.append(e3)
    s.late.append(late_row(e3, 1200))
    s.expected[3] = "late"
    # 4 duplicate: a copy arrived after the stream's dedup horizon and was counted again
    e4 = [event(next(n), 4, t) for t in (400, 410)]
    s.batch += e4 + [e4[1]]
    (row,) = stream_sessions(e4)
    s.sessions.append({**row, "event_count": row["event_count"] + 1})
    s.expected[4] = "duplicate"
    # 5 rule_difference: user_id as a JSON string is quarantined by compaction (wrong_type), the stream counts it
    e5 = [event(next(n), 5, t) for t in (500, 510)]
    odd = dict(event(next(n), 5, 520), user_id="5")
    s.batch += e5 + [odd]
    s.sessions += stream_sessions(e5 + [odd])
    s.expected[5] = "rule_difference"
    # 6 rule_difference on the stream side only: an unknown device id is quarantined, the stream accepts it
    phone = event(next(n), 6, 600, device_id="phone")
    s.batch.append(phone)
    s.sessions += stream_sessions([phone])
    s.expected[6] = "rule_difference"
    # 7 rule_difference the other way: the stream rejected an event (ahead of its clock then) the batch accepts
    e7 = [event(next(n), 7, t) for t in (700, 705)]
    s.batch += e7
    s.sessions += stream_sessions(e7[:1])
    s.rejected.append(rejected_row(line(e7[1]), FUTURE_REASON, 400))
    s.expected[7] = "rule_difference"
    # 8 missing_in_stream: the stream never saw these events
    s.batch += [event(next(n), 8, t) for t in (800, 810)]
    s.expected[8] = "missing_in_stream"
    # 9 missing_in_batch: a stream session whose events the batch never got
    s.sessions += stream_sessions([event(next(n), 9, 900)])
    s.expected[9] = "missing_in_batch"
    # 10 mismatch: the stream counts an event nothing explains
    e10 = [event(next(n), 10, t) for t in (1000, 1010)]
    s.batch += e10
    (row,) = stream_sessions(e10)
    s.sessions.append({**row, "event_count": 3})
    s.expected[10] = "mismatch"
    # 11 deferred: starts in H, still going 30 min after the hour (events 55 s apart up to the horizon)
    s.matched(11, [event(next(n), 11, 3540 + 55 * i) for i in range(34)], cause="deferred")
    # 12 crosses into the next hour: attributed to H (its start) on both sides
    s.matched(12, [event(next(n), 12, t) for t in (3580, 3620)])
    # 13 crosses in from the previous hour: H - 1's session on both sides, not a row of H
    s.matched(13, [event(next(n), 13, t) for t in (-30, 30)], cause="not in H")
    # 14 starts exactly at H + 1 h: the next hour's
    s.matched(14, [event(next(n), 14, 3600)], cause="not in H")
    return s

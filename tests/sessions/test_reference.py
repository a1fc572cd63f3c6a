"""The reference sessionizer's notion of a *closed* session (what a streaming run must have emitted)."""

from __future__ import annotations

from include.sessions.contract import SessionContract
from localdev.reference import check_records, closed_sessions
from tests.sessions.golden import T, event, line

CONTRACT = SessionContract()


def _closed(*events: dict) -> list[tuple[int, int]]:
    checked = check_records([line(e) for e in events], CONTRACT)
    return [(s["user_id"], s["event_count"]) for s in closed_sessions(checked.events, CONTRACT)]


def test_a_session_closes_only_once_the_watermark_passes_its_end_plus_the_late_margin():
    session = [event("a1", 1, T), event("a2", 1, T + 1_000)]
    end = T + 1_000 + CONTRACT.gap_ms  # session_end: last event + gap
    just_short = end + CONTRACT.late_margin_ms + CONTRACT.watermark_delay_ms
    assert _closed(*session, event("b1", 2, just_short)) == []
    assert _closed(*session, event("b1", 2, just_short + 1)) == [(1, 2)]


def test_no_events_no_sessions():
    assert closed_sessions([], CONTRACT) == []

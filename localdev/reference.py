"""The session contract in plain Python: the oracle the engines are tested against, and the CLI's input checks.

Same definitions as the SQL templates (see ``docs/sessions.md``), written the obvious way so a reader can check
the SQL against it: the reject rules in order, first-arrival dedup, inclusive gap, first/last event by
(client_timestamp, client_event, event_id), md5 session id, epoch-aligned metric windows.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from include.events_schema import CLIENT_EVENT_MAX_LEN
from include.sessions.contract import REJECT_RULES, SessionContract, iso_ms, session_id

_CONTROL = re.compile(r"[\x00-\x1f]")
_POSITIVE_INT = re.compile(r"[0-9]{1,10}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS = ("event_id", "user_id", "device_id", "client_event", "client_timestamp", "countrycode")


@dataclass(frozen=True)
class Event:
    """A valid event (after the reject rules)."""

    event_id: str
    user_id: int
    device_id: str
    client_event: str
    client_timestamp: str
    countrycode: str
    event_ms: int

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.client_timestamp, self.client_event, self.event_id)


def _scalar_text(value: Any) -> str | None:
    """What JSON_VALUE returns for a member: scalars as text, NULL for null/objects/arrays."""
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def extract_fields(record: str) -> dict[str, str | None] | None:
    """The six fields as JSON_VALUE would see them; None when the record is not a JSON object."""
    try:
        doc = json.loads(record)
    except ValueError:
        return None
    return fields_of(doc)


def fields_of(doc: Any) -> dict[str, str | None] | None:
    """:func:`extract_fields` of an already parsed record."""
    if not isinstance(doc, dict):
        return None
    return {name: _scalar_text(doc.get(name)) for name in _FIELDS}


_TS = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})Z", re.ASCII)


def timestamp_ms(value: str) -> int | None:
    """Epoch ms of a wire timestamp, None unless it is exactly the wire format of a real instant."""
    match = _TS.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    year, month, day, hour, minute, second, millis = map(int, match.groups())
    try:
        ts = datetime(year, month, day, hour, minute, second, tzinfo=UTC)  # refuses 2026-02-30, hour 24
    except ValueError:
        return None
    return (ts - _EPOCH) // timedelta(seconds=1) * 1000 + millis


def _failing(
    check: str, value: str | None, fields: dict | None, now_ms: int, contract: SessionContract
) -> bool:
    if check == "not_json_object":
        return fields is None
    if check == "null":
        return value is None
    if check == "bad_string":
        return value == "" or bool(_CONTROL.search(value))
    if check == "positive_int":
        return not (_POSITIVE_INT.fullmatch(value) and 1 <= int(value) <= 2_147_483_647)
    if check == "too_long":
        return len(value) > CLIENT_EVENT_MAX_LEN
    if check == "bad_timestamp":
        return timestamp_ms(value) is None
    if check == "future":
        return timestamp_ms(value) > now_ms + contract.max_future_skew_ms
    raise ValueError(f"no Python rendering for reject check {check!r}")


def reject_reason(
    fields: dict[str, str | None] | None, contract: SessionContract, now_ms: int | None = None
) -> tuple[str, str] | None:
    """(field, reason) of the first failing reject rule, or None for a valid event."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    for rule in REJECT_RULES:
        value = fields.get(rule.field) if fields is not None else None
        if _failing(rule.check, value, fields, now_ms, contract):
            return rule.field, rule.reason
        if fields is None:  # only the first rule applies to a record that is not an object
            break
    return None


def to_event(fields: dict[str, str | None]) -> Event:
    ts = fields["client_timestamp"]
    return Event(
        event_id=fields["event_id"],
        user_id=int(fields["user_id"]),
        device_id=fields["device_id"],
        client_event=fields["client_event"],
        client_timestamp=ts,
        countrycode=fields["countrycode"],
        event_ms=timestamp_ms(ts),
    )


@dataclass(frozen=True)
class Checked:
    events: list[Event]
    rejected: list[dict[str, str]]


def check_records(records: Iterable[str], contract: SessionContract, now_ms: int | None = None) -> Checked:
    """Valid events (first copy of each event_id, in arrival order) and rejected records with reasons."""
    events: list[Event] = []
    rejected: list[dict[str, str]] = []
    seen: set[str] = set()
    for record in records:
        if not record.strip():
            continue
        fields = extract_fields(record)
        failure = reject_reason(fields, contract, now_ms)
        if failure is not None:
            rejected.append({"reason": failure[1], "record": record})
            continue
        event = to_event(fields)
        if event.event_id not in seen:
            seen.add(event.event_id)
            events.append(event)
    return Checked(events, rejected)


def sessionize(events: Iterable[Event], contract: SessionContract) -> list[dict[str, Any]]:
    """Session rows over unique valid events, sorted by user_id, device_id, session_start."""
    by_key: dict[tuple[int, str], list[Event]] = defaultdict(list)
    for event in events:
        by_key[(event.user_id, event.device_id)].append(event)
    rows: list[dict[str, Any]] = []
    for (user_id, device_id), key_events in sorted(by_key.items()):
        key_events.sort(key=lambda e: e.sort_key)
        current: list[Event] = []
        for event in key_events:
            if current and event.event_ms - current[-1].event_ms > contract.gap_ms:
                rows.append(_session_row(user_id, device_id, current, contract))
                current = []
            current.append(event)
        rows.append(_session_row(user_id, device_id, current, contract))
    return rows


def closed_sessions(events: list[Event], contract: SessionContract) -> list[dict[str, Any]]:
    """The sessions a streaming run over ``events`` (in event-time order) must have emitted: those the
    watermark (newest event time − watermark delay) has passed, ``last_event_at + gap + late margin`` — the
    rest are still open in the job's state."""
    if not events:
        return []
    watermark = max(e.event_ms for e in events) - contract.watermark_delay_ms
    return [
        s
        for s in sessionize(events, contract)
        if timestamp_ms(s["last_event_at"]) + contract.gap_ms + contract.late_margin_ms < watermark
    ]


def _session_row(
    user_id: int, device_id: str, events: list[Event], contract: SessionContract
) -> dict[str, Any]:
    first = min(events, key=lambda e: e.sort_key)
    last = max(events, key=lambda e: e.sort_key)
    start_ms = min(e.event_ms for e in events)
    last_ms = max(e.event_ms for e in events)
    return {
        "session_id": session_id(user_id, device_id, start_ms),
        "user_id": user_id,
        "device_id": device_id,
        "session_start": iso_ms(start_ms),
        "last_event_at": iso_ms(last_ms),
        "session_end": iso_ms(last_ms + contract.gap_ms),
        "duration_ms": last_ms - start_ms,
        "event_count": len({e.event_id for e in events}),
        "first_event": first.client_event,
        "last_event": last.client_event,
        "countrycode": first.countrycode,
    }


def metrics(events: Iterable[Event], contract: SessionContract) -> list[dict[str, Any]]:
    """Per-window metrics rows, sorted by window_start, countrycode, device_id, client_event."""
    width = contract.metrics_window_ms
    groups: dict[tuple[int, str, str, str], tuple[set[str], set[int]]] = defaultdict(lambda: (set(), set()))
    for e in events:
        start = e.event_ms - e.event_ms % width
        ids, users = groups[(start, e.countrycode, e.device_id, e.client_event)]
        ids.add(e.event_id)
        users.add(e.user_id)
    return [
        {
            "window_start": iso_ms(start),
            "window_end": iso_ms(start + width),
            "countrycode": country,
            "device_id": device,
            "client_event": client_event,
            "events": len(ids),
            "users": len(users),
        }
        for (start, country, device, client_event), (ids, users) in sorted(groups.items())
    ]

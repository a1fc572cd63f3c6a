"""Golden boundary cases shared by the DuckDB and the Flink tests: one input, expectations per engine.

Each case has its own user_id, so all cases run in one job (JVM start-ups cost seconds). The input is in arrival
order; an event's place in it is its arrival, which is what makes an event out of order or late.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from include.sessions.contract import iso_ms

T = 1710061200000  # 2024-03-10T09:00:00.000Z
DOCS = Path(__file__).resolve().parents[2] / "docs" / "sessions.md"


def event(event_id, user_id, ts_ms, client_event="view", device_id="mobile", countrycode="DE") -> dict:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "device_id": device_id,
        "client_event": client_event,
        "client_timestamp": iso_ms(ts_ms),
        "countrycode": countrycode,
    }


def line(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


@dataclass
class Golden:
    #: (arrival key, record text); sorted by arrival key to give the input order.
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    #: event_ids Flink must route to the late sink.
    late_ids: set[str] = field(default_factory=set)
    #: record text -> expected reject reason (both engines).
    rejected: dict[str, str] = field(default_factory=dict)

    def add(self, obj_or_text, arrival: float | None = None) -> None:
        text = obj_or_text if isinstance(obj_or_text, str) else line(obj_or_text)
        if arrival is None:
            arrival = _ts_of(text)
        self.arrivals.append((arrival, text))

    @property
    def records(self) -> list[str]:
        return [text for _, text in sorted(self.arrivals, key=lambda a: a[0])]


def _ts_of(text: str) -> float:
    from localdev.reference import extract_fields, timestamp_ms

    fields = extract_fields(text)
    ms = timestamp_ms(fields["client_timestamp"]) if fields and fields.get("client_timestamp") else None
    if ms is None:
        raise ValueError(f"give an arrival for {text!r}")
    return ms


def build() -> Golden:
    g = Golden()
    # A: exactly one gap apart -> one session.
    g.add(event("a1", 101, T + 0, "login"))
    g.add(event("a2", 101, T + 60_000, "logout"))
    # B: gap + 1 ms -> two sessions.
    g.add(event("b1", 102, T + 1_000))
    g.add(event("b2", 102, T + 61_001))
    # C: gap - 1 ms -> one session.
    g.add(event("c1", 103, T + 2_000))
    g.add(event("c2", 103, T + 61_999))
    # D: out of order within the watermark delay (3 s behind the newest event) -> kept.
    g.add(event("o1", 104, T + 70_000, "first"))
    g.add(event("o3", 104, T + 74_000, "third"))
    g.add(event("o2", 104, T + 71_000, "second"), arrival=T + 74_000.5)
    # E: late beyond the watermark: e2 arrives 19 s after its time -> late sink, not in sessions (Flink).
    g.add(event("e1", 105, T + 80_000))
    g.add(event("e2", 105, T + 81_000, "late_one"), arrival=T + 100_000.5)
    g.late_ids.add("e2")
    # F: duplicates: an identical copy, a tampered copy, and a copy after the watermark passed -> count once.
    g.add(event("f1", 106, T + 90_000, "login"))
    g.add(event("f1", 106, T + 90_000, "login"), arrival=T + 90_000.5)
    g.add(event("f2", 106, T + 91_000, "view"))
    g.add(event("f1", 106, T + 90_000, "tampered", countrycode="FR"), arrival=T + 92_000.5)
    g.add(event("f1", 106, T + 90_000, "login"), arrival=T + 130_000.5)
    # G: a session across an hour boundary -> partition of its start hour (09).
    g.add(event("g1", 107, T + 3_570_000))
    g.add(event("g2", 107, T + 3_620_000))
    # H: one user, two devices, interleaved -> two sessions.
    g.add(event("h1", 108, T + 100_000, device_id="mobile"))
    g.add(event("h2", 108, T + 100_500, device_id="tablet"))
    g.add(event("h3", 108, T + 101_000, device_id="mobile"))
    g.add(event("h4", 108, T + 101_500, device_id="tablet"))
    # I: three events in the same millisecond -> order by client_event, then event_id.
    g.add(event("i3", 109, T + 200_000, "b_evt"))
    g.add(event("i1", 109, T + 200_000, "a_evt"))
    g.add(event("i2", 109, T + 200_000, "c_evt"))
    # J: the 2 ms margin: user 111 moves the watermark to T+359.999 s, which fires user 110's session
    # [T+300 s, T+360 s); j2 at exactly T+360 s (inclusive gap) would belong to it -> late (Flink).
    g.add(event("j1", 110, T + 300_000, "first"))
    g.add(event("j9", 111, T + 364_999))
    g.add(event("j2", 110, T + 360_000, "too_late"), arrival=T + 364_999.5)
    g.late_ids.add("j2")
    # K: countrycode of the first event, first/last by time not arrival.
    g.add(event("k2", 112, T + 400_000, "second", countrycode="FR"))
    g.add(event("k1", 112, T + 399_000, "first", countrycode="IE"), arrival=T + 400_000.5)
    # L: a 64-character client_event made of emoji is valid (characters, not bytes or UTF-16 units).
    g.add(event("l1", 113, T + 410_000, "\U0001f37a" * 64))
    # R: rejected records (reasons in contract.REJECT_RULES).
    bad = {
        "not json at all": "record is not a JSON object",
        "[1, 2, 3]": "record is not a JSON object",
        # Content after the object: Flink's JSON functions would ignore it, every other reader rejects it.
        line(event("r20", 120, T + 420_000)) + "}": "record is not a JSON object",
        line(event("r21", 120, T + 420_000))
        + line(event("r22", 120, T + 420_001)): "record is not a JSON object",
        line(event("r23", 120, T + 420_000)) + ', {"a": 1}': "record is not a JSON object",
        # A UTF-8 byte order mark before the object: JSON text must not start with one (RFC 8259, section 8.1).
        "\ufeff" + line(event("r25", 120, T + 420_000)): "record is not a JSON object",
        line(event("r24", 120, T + 420_000)) + "], [1": "record is not a JSON object",
        line(
            {k: v for k, v in event("r1", 120, T + 420_000).items() if k != "event_id"}
        ): "event_id is missing or null",
        line(event("", 120, T + 420_000)): "event_id is empty or contains a control character",
        line({**event("r3", 120, T + 420_000), "user_id": 0}): "user_id is not a positive 32-bit integer",
        line({**event("r4", 120, T + 420_000), "user_id": 12.5}): "user_id is not a positive 32-bit integer",
        line(
            {**event("r5", 120, T + 420_000), "user_id": 3_000_000_000}
        ): "user_id is not a positive 32-bit integer",
        line({**event("r6", 120, T + 420_000), "user_id": None}): "user_id is missing or null",
        line({**event("r7", 120, T + 420_000), "device_id": {"a": 1}}): "device_id is missing or null",
        line(
            event("r8", 120, T + 420_000, "tab\there")
        ): "client_event is empty or contains a control character",
        line(event("r9", 120, T + 420_000, "\U0001f37a" * 65)): "client_event is longer than 64 characters",
        line({**event("r10", 120, T + 420_000), "client_timestamp": "2024-02-30T10:00:00.000Z"}): (
            "client_timestamp is not a valid ISO-8601 UTC timestamp like 2026-11-27T10:15:30.123Z"
        ),
        line({**event("r11", 120, T + 420_000), "client_timestamp": "2024-03-10T09:07:00Z"}): (
            "client_timestamp is not a valid ISO-8601 UTC timestamp like 2026-11-27T10:15:30.123Z"
        ),
        line({**event("r14", 120, T + 420_000), "client_timestamp": "\uff12024-03-10T09:07:00.000Z"}): (
            "client_timestamp is not a valid ISO-8601 UTC timestamp like 2026-11-27T10:15:30.123Z"
        ),
        line({**event("r12", 120, T + 420_000), "client_timestamp": "2999-01-01T00:00:00.000Z"}): (
            "client_timestamp is further ahead of the processing time than allowed"
        ),
        line({**event("r13", 120, T + 420_000), "countrycode": ""}): (
            "countrycode is empty or contains a control character"
        ),
    }
    for i, (text, reason) in enumerate(bad.items()):
        g.add(text, arrival=T + 420_000 + i / 100)
        g.rejected[text] = reason
    return g


def random_block(seed: int, users: range, start_ms: int, count: int) -> list[tuple[float, str]]:
    """Random events with small out-of-orderness (< 3 s) and some duplicates, as (arrival, record)."""
    rnd = random.Random(seed)
    out = []
    ts = start_ms
    for i in range(count):
        ts += rnd.choice((0, 0, 5, 500, 2_000, 20_000, 59_999, 60_000, 60_001, 90_000))
        user = rnd.choice(users)
        e = event(
            f"rnd{seed}-{i}",
            user,
            ts - rnd.randint(0, 2_500),
            rnd.choice(("login", "view_beer_list", "add_czech_beer", "checkout")),
            rnd.choice(("computer", "mobile")),
            rnd.choice(("DE", "CZ")),
        )
        arrival = ts + i / 1_000_000
        out.append((arrival, line(e)))
        if rnd.random() < 0.05:
            out.append((arrival + rnd.randint(0, 4_000), line(e)))
    return out


def doc_example() -> tuple[list[str], list[dict]]:
    """The worked example of docs/sessions.md: its events and its expected sessions."""
    text = DOCS.read_text()
    events = re.search(r"```jsonl events\n(.*?)```", text, re.S)
    sessions = re.search(r"```jsonl sessions\n(.*?)```", text, re.S)
    assert events and sessions, f"{DOCS} lost its worked example blocks"
    return (
        [x for x in events.group(1).splitlines() if x.strip()],
        [json.loads(x) for x in sessions.group(1).splitlines() if x.strip()],
    )


def by_user(rows, user_id):
    return [r for r in rows if r["user_id"] == user_id]


def expected_common(rows, engine: str) -> None:
    """Assert the golden cases on sessions from either engine (late handling differs: see E and J)."""
    (a,) = by_user(rows, 101)
    assert (a["session_start"], a["last_event_at"], a["event_count"]) == (iso_ms(T), iso_ms(T + 60_000), 2)
    assert (a["first_event"], a["last_event"], a["duration_ms"]) == ("login", "logout", 60_000)
    assert a["session_end"] == iso_ms(T + 120_000)
    b = by_user(rows, 102)
    assert [(s["session_start"], s["event_count"]) for s in b] == [
        (iso_ms(T + 1_000), 1),
        (iso_ms(T + 61_001), 1),
    ]
    (c,) = by_user(rows, 103)
    assert c["event_count"] == 2 and c["duration_ms"] == 59_999
    (d,) = by_user(rows, 104)
    assert (d["event_count"], d["first_event"], d["last_event"]) == (3, "first", "third")
    (e,) = by_user(rows, 105)
    if engine == "flink":
        assert e["event_count"] == 1 and e["last_event"] == "view"
    else:
        assert e["event_count"] == 2 and e["last_event"] == "late_one"
    (f,) = by_user(rows, 106)
    assert (f["event_count"], f["first_event"], f["countrycode"]) == (2, "login", "DE")
    (g_,) = by_user(rows, 107)
    assert (g_["session_start"], g_["last_event_at"]) == (
        "2024-03-10T09:59:30.000Z",
        "2024-03-10T10:00:20.000Z",
    )
    h = by_user(rows, 108)
    assert [(s["device_id"], s["event_count"]) for s in h] == [("mobile", 2), ("tablet", 2)]
    (i,) = by_user(rows, 109)
    assert (i["event_count"], i["first_event"], i["last_event"], i["duration_ms"]) == (3, "a_evt", "c_evt", 0)
    j = by_user(rows, 110)
    if engine == "flink":
        assert [(s["event_count"], s["last_event"]) for s in j] == [(1, "first")]
    else:
        assert [(s["event_count"], s["last_event"]) for s in j] == [(2, "too_late")]
    (k,) = by_user(rows, 112)
    assert (k["first_event"], k["last_event"], k["countrycode"]) == ("first", "second", "IE")
    (l_,) = by_user(rows, 113)
    assert l_["first_event"] == "\U0001f37a" * 64
    assert not by_user(rows, 120), "rejected records must not make sessions"

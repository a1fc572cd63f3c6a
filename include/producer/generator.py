"""Deterministic clickstream generation: the records of an interval are a pure function of (params, interval).

How it stays replayable and split-invariant: the event stream is defined over absolute time, independent of
the interval asked for. Time is cut into half-hour slots. Each slot has its own RNG (keyed by seed and slot)
that draws session starts as a Poisson process, each session's length and intra-session gaps, and a session
seed. A session picks its user from a deterministic list of candidates (skipping users still busy with an
earlier session of the slot), and its content (devices, funnel, event ids, fault draws) comes from an RNG
seeded by the session seed alone. An interval is then every record whose send time falls in [start, end),
collected from the slots whose sessions can reach it.

Users never have two overlapping sessions, and a user's sessions are always more than 60 s apart:

* within a slot, a busy user is skipped when a session is assigned (``raw`` assignment);
* across slots, a session of slot k whose user's last ``raw`` session of slot k-1 ends less than
  ``MIN_IDLE_MS`` before it is handed to the next free candidate (or dropped, which only happens near
  saturation). Only ``raw`` data of k-1 is consulted, so the dependency chain stops after one slot: the
  final sessions of k-1 are a subset of its raw sessions plus re-assigned ones, which start within
  ``MAX_SESSION_MS + MIN_IDLE_MS`` of the slot start and so end long before slot k; and sessions of k-2
  end before slot k starts because sessions last at most ``MAX_SESSION_MS``.

Sessions are not confined to a slot: they start anywhere in it and may run into the next one, so they
cross minute and hour boundaries. Faults are decided per event from draws that are always made, so turning
a knob changes which records are faulty but never the underlying events. Whether an event is resent is
decided by its event id's random bits (no extra draw, so adding the knob changed no existing event).
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache
from random import Random
from typing import NamedTuple

from include.producer import malformed
from include.producer.params import ProducerParams
from include.producer.population import BEERS, Population, derive
from include.producer.records import _EPOCH, ProducedBatch, ProducedRecord

SLOT_MS = 1_800_000
MAX_SESSION_MS = 12 * 60_000
#: Sessions of one user are separated by more than 60 s (the session gap the pipeline uses).
MIN_IDLE_MS = 61_000
MAX_EVENTS_PER_SESSION = 60
#: How many users a session tries before it is dropped (only relevant near saturation).
MAX_CANDIDATES = 32
# Re-assigned sessions start before MAX_SESSION_MS + MIN_IDLE_MS into their slot and must end (plus the idle
# gap) before the next slot starts, so that slot's check against raw sessions stays sufficient.
assert 2 * (MAX_SESSION_MS + MIN_IDLE_MS) < SLOT_MS

#: Session length is 1 + a geometric variable (many short visits, a few long ones), capped.
_GEOMETRIC_P = 1 / 7
_LOG_Q = math.log(1 - _GEOMETRIC_P)
MEAN_EVENTS_PER_SESSION = (1 - (1 - _GEOMETRIC_P) ** MAX_EVENTS_PER_SESSION) / _GEOMETRIC_P

# Intra-session gaps: mostly a few seconds, sometimes 30-59 s, occasionally right at the 60 s boundary.
_SHORT_GAP_SHARE = 0.80
_LONG_GAP_SHARE = 0.16
_SHORT_GAP_MU = math.log(3000)
_SHORT_GAP_SIGMA = 0.9
BOUNDARY_GAPS_MS = (59_500, 59_999, 60_000, 60_001, 60_500)

#: Largest interval :func:`generate` builds in memory, in expected records (produce_interval chunks).
MAX_RECORDS_PER_BATCH = 10_000_000
#: Timestamps are rendered with four-digit years.
_MAX_MS = (datetime(9999, 1, 1, tzinfo=_EPOCH.tzinfo) - _EPOCH) // timedelta(milliseconds=1)

# The shop's funnel: next state and probability; "add" becomes add_<beer>_beer by the user's taste.
_FIRST = (("login", 0.55), ("view_beer_list", 0.35), ("view_beer_details", 0.10))
_NEXT = {
    "login": (("view_beer_list", 0.8), ("view_beer_details", 0.1), ("view_cart", 0.1)),
    "view_beer_list": (
        ("view_beer_details", 0.5),
        ("add", 0.3),
        ("view_beer_list", 0.05),
        ("view_cart", 0.15),
    ),
    "view_beer_details": (
        ("add", 0.45),
        ("view_beer_list", 0.35),
        ("view_beer_details", 0.1),
        ("view_cart", 0.1),
    ),
    "add": (("view_beer_list", 0.4), ("view_beer_details", 0.15), ("view_cart", 0.35), ("add", 0.1)),
    "remove_beer": (("view_beer_list", 0.4), ("view_cart", 0.5), ("add", 0.1)),
    "view_cart": (
        ("checkout", 0.35),
        ("remove_beer", 0.15),
        ("view_beer_list", 0.4),
        ("view_beer_details", 0.1),
    ),
    "checkout": (("payment_succeeded", 0.75), ("view_cart", 0.25)),
    "payment_succeeded": (("view_beer_list", 0.7), ("view_beer_details", 0.3)),
}
_LOGOUT_SHARE = 0.3
_DEVICE_SWITCH_SHARE = 0.10
#: Which of a user's devices a session uses (primary first), by number of devices.
_DEVICE_CHOICE = {1: (1.0,), 2: (0.75, 1.0), 3: (0.65, 0.90, 1.0)}
_ADD_EVENTS = tuple(f"add_{beer}_beer" for beer in BEERS)


def _cumulative(table: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    acc, out = 0.0, []
    for name, p in table:
        acc += p
        out.append((name, acc))
    assert abs(acc - 1.0) < 1e-9, table
    return tuple(out)


_FIRST_CUM = _cumulative(_FIRST)
_NEXT_CUM = {state: _cumulative(table) for state, table in _NEXT.items()}


def _choose(cum: tuple[tuple[str, float], ...], u: float) -> str:
    for name, bound in cum:
        if u < bound:
            return name
    return cum[-1][0]


class Session(NamedTuple):
    start: int
    end: int
    user_id: int
    seed: int
    #: Index of the candidate that took the session; re-assignment continues after it.
    attempt: int
    slot: int
    offset_start: int
    offset_count: int


class _RawSlot(NamedTuple):
    sessions: list[Session]
    #: Event offsets (ms from session start) of all sessions, flat.
    offsets: array
    last_end: dict[int, int]
    dropped: int


@lru_cache(maxsize=4)
def _population(seed: int, users: int) -> Population:
    return Population(seed, users)


@lru_cache(maxsize=6)
def _raw_slot(seed: int, users: int, events_per_second: float, slot: int) -> _RawSlot:
    """Sessions starting in ``slot`` with users assigned among themselves only (see module docstring)."""
    rng = Random(derive(seed, "slot", slot))
    population = _population(seed, users)
    sessions_per_ms = events_per_second / 1000.0 / MEAN_EVENTS_PER_SESSION
    t = float(slot * SLOT_MS)
    slot_end = (slot + 1) * SLOT_MS
    offsets = array("q")
    sessions: list[Session] = []
    last_end: dict[int, int] = {}
    dropped = 0
    rand, gauss, exp = rng.random, rng.gauss, math.exp
    short_share, long_bound = _SHORT_GAP_SHARE, _SHORT_GAP_SHARE + _LONG_GAP_SHARE
    n_boundary = len(BOUNDARY_GAPS_MS)
    while True:
        t += rng.expovariate(sessions_per_ms)
        if t >= slot_end:
            break
        start = int(t)
        session_seed = rng.getrandbits(64)
        first = len(offsets)
        offsets.append(0)
        n_events = min(MAX_EVENTS_PER_SESSION, 1 + int(math.log(1.0 - rand()) / _LOG_Q))
        offset = 0
        for _ in range(n_events - 1):
            # The gap mixture, inlined: this loop is where generation spends most of its time.
            u = rand()
            if u < short_share:
                gap = min(29_999, max(120, int(exp(_SHORT_GAP_MU + _SHORT_GAP_SIGMA * gauss()))))
            elif u < long_bound:
                gap = 30_000 + int(rand() * 29_001)
            else:
                gap = BOUNDARY_GAPS_MS[int(rand() * n_boundary)]
            offset += gap
            if offset > MAX_SESSION_MS:
                break
            offsets.append(offset)
        end = start + offsets[-1]
        for attempt in range(MAX_CANDIDATES):
            user = population.candidate(session_seed, attempt)
            busy_until = last_end.get(user)
            if busy_until is None or start >= busy_until + MIN_IDLE_MS:
                break
        else:
            dropped += 1
            del offsets[first:]
            continue
        last_end[user] = end
        sessions.append(Session(start, end, user, session_seed, attempt, slot, first, len(offsets) - first))
    return _RawSlot(sessions, offsets, last_end, dropped)


@lru_cache(maxsize=6)
def _final_slot(
    seed: int, users: int, events_per_second: float, slot: int
) -> tuple[list[Session], list[int], int]:
    """The slot's sessions after resolving clashes with sessions of the previous slot that run into it."""
    raw = _raw_slot(seed, users, events_per_second, slot)
    previous_end = _raw_slot(seed, users, events_per_second, slot - 1).last_end
    population = _population(seed, users)
    kept: list[Session] = []
    clashes: list[Session] = []
    busy: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for s in raw.sessions:
        before = previous_end.get(s.user_id)
        if before is not None and s.start < before + MIN_IDLE_MS:
            clashes.append(s)
        else:
            kept.append(s)
            busy[s.user_id].append((s.start, s.end))
    dropped = raw.dropped
    for s in clashes:
        for attempt in range(s.attempt + 1, MAX_CANDIDATES):
            user = population.candidate(s.seed, attempt)
            before = previous_end.get(user)
            if before is not None and s.start < before + MIN_IDLE_MS:
                continue
            if any(s.start < b + MIN_IDLE_MS and a < s.end + MIN_IDLE_MS for a, b in busy.get(user, ())):
                continue
            moved = s._replace(user_id=user, attempt=attempt)
            kept.append(moved)
            busy[user].append((s.start, s.end))
            break
        else:
            dropped += 1
    kept.sort(key=lambda s: (s.start, s.seed))
    return kept, [s.start for s in kept], dropped


def _session_events(session: Session, offsets: array, population: Population) -> list[tuple]:
    """All events of one session, from its own RNG: the same whatever interval asked for it.

    Each event is (ms, uuid bits, client_event, device_id, u_fault, u_dup, u_kind, u_aux); plain tuples and
    unformatted ids because this is the hot loop and most callers keep only part of a session.
    """
    rng = Random(session.seed)
    rand = rng.random
    profile = population.profile(session.user_id)
    devices = profile.devices
    u = rand()
    choice = _DEVICE_CHOICE[len(devices)]
    device_index = min(bisect_right(choice, u), len(choice) - 1)
    n = session.offset_count
    device = other_device = devices[device_index]
    switch_at = n
    if len(devices) > 1 and n >= 3 and rand() < _DEVICE_SWITCH_SHARE:
        # e.g. browse on the phone, pay on the computer: a second device within one burst.
        switch_at = 1 + int(rand() * (n - 1))
        other_device = devices[(device_index + 1 + int(rand() * (len(devices) - 1))) % len(devices)]
    beer_cum = profile.beer_cum
    beer_total = beer_cum[-1]
    cart = 0
    state = ""
    events: list[tuple] = []
    append = events.append
    getrandbits = rng.getrandbits
    base = session.start
    first = session.offset_start
    for j in range(n):
        if j == 0:
            state = _choose(_FIRST_CUM, rand())
        elif j == n - 1 and n >= 3 and rand() < _LOGOUT_SHARE:
            state = "logout"
        else:
            state = _choose(_NEXT_CUM["add" if state.startswith("add_") else state], rand())
        if cart == 0 and (state == "checkout" or state == "remove_beer"):
            state = "view_beer_list"
        if state == "add":
            state = _ADD_EVENTS[min(bisect_right(beer_cum, rand() * beer_total), 3)]
            cart += 1
        elif state == "remove_beer":
            cart -= 1
        elif state == "payment_succeeded":
            cart = 0
        if j == switch_at:
            device = other_device
        append((base + offsets[first + j], getrandbits(128), state, device, rand(), rand(), rand(), rand()))
    return events


_UUID_CLEAR = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def uuid4_string(bits: int) -> str:
    """A version-4 UUID string from 128 random bits (same result as str(uuid.UUID(int=bits, version=4)))."""
    h = f"{(bits & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def to_ms(value: datetime, name: str = "timestamp") -> int:
    """Epoch milliseconds of an aware datetime (sub-millisecond digits are truncated)."""
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    delta = value - _EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def check_interval(start: datetime, end: datetime) -> tuple[int, int]:
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    if not start_ms < end_ms:
        raise ValueError(f"start must be before end, got start={start.isoformat()} end={end.isoformat()}")
    if start_ms < 0 or end_ms > _MAX_MS:
        raise ValueError(
            f"interval must lie between 1970-01-01 and 9999-01-01, got {start.isoformat()}..{end.isoformat()}"
        )
    return start_ms, end_ms


def _slots_for(window_start: int, window_end: int) -> range:
    """Slots whose sessions can have events in [window_start, window_end)."""
    return range((window_start - MAX_SESSION_MS) // SLOT_MS, (window_end - 1) // SLOT_MS + 1)


def _timestamp(ms: int, cache: dict[int, str]) -> str:
    seconds, millis = divmod(ms, 1000)
    prefix = cache.get(seconds)
    if prefix is None:
        prefix = cache[seconds] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{prefix}.{millis:03d}Z"


def _row_key(row: tuple) -> tuple:
    return row[:4]


#: An event is resent when the low 53 bits of its event id's random bits, as a fraction, are below
#: ``resend_fraction``: uniform and independent of every other draw of the event.
_RESEND_BITS = (1 << 53) - 1
_RESEND_SCALE = 1.0 / (1 << 53)
#: Order of records sent at the same ms for the same event: original, its duplicate, a resent copy.
_ORIGINAL, _DUPLICATE, _RESENT = 0, 1, 2


def generate(params: ProducerParams | dict, start: datetime, end: datetime) -> ProducedBatch:
    """Every record sent for [start, end), in send order, with its ground truth.

    A record is sent at its event's client_timestamp, except late events (sent ``late_delay_seconds`` later),
    duplicates (sent again right after the original) and resent copies (sent again ``resend_delay_seconds``
    after the original, so possibly in a later interval than it). Send order is (send time,
    client_timestamp, event_id), which is (client_timestamp, event_id) for everything but late and resent
    records; it makes ``generate(a, c) == generate(a, b) + generate(b, c)`` hold record by record for any
    split point b.
    """
    params = ProducerParams.coerce(params)
    start_ms, end_ms = check_interval(start, end)
    copies = 1 + params.duplicate_fraction + params.resend_fraction
    expected = params.events_per_second * (end_ms - start_ms) / 1000 * copies
    if expected > MAX_RECORDS_PER_BATCH:
        raise ValueError(
            f"interval {start.isoformat()}..{end.isoformat()} would hold about {expected:,.0f} records at "
            f"events_per_second={params.events_per_second}, more than {MAX_RECORDS_PER_BATCH:,} in one "
            "batch; generate shorter intervals (produce_interval does this in chunks)"
        )
    seed, users, eps = params.seed, params.users, float(params.events_per_second)
    malformed_share = params.malformed_fraction
    late_share = params.late_fraction
    late_bound = malformed_share + late_share
    dup_share = params.duplicate_fraction
    delay = params.late_delay_ms
    resend_share = params.resend_fraction
    resend = params.resend_delay_ms
    kinds = params.malformed_kinds
    population = _population(seed, users)

    # Event-time windows whose events can be sent in [start, end): on time, late, and resent copies of both.
    shifts = [0, delay] if late_share > 0 else [0]
    if resend_share > 0:
        shifts += [shift + resend for shift in shifts]
    windows = [(start_ms - shift, end_ms - shift) for shift in shifts]
    slots = sorted({slot for w in windows for slot in _slots_for(*w)})
    dropped = 0
    ts_cache: dict[int, str] = {}
    rows: list[tuple] = []
    for slot in slots:
        sessions, starts, slot_dropped = _final_slot(seed, users, eps, slot)
        dropped += slot_dropped
        offsets = _raw_slot(seed, users, eps, slot).offsets
        # Sessions are sorted by start and last at most MAX_SESSION_MS: bisect to the ones that can matter.
        candidates = sorted(
            {
                i
                for w0, w1 in windows
                for i in range(bisect_left(starts, w0 - MAX_SESSION_MS), bisect_left(starts, w1))
            }
        )
        for i in candidates:
            session = sessions[i]
            if not any(session.start < w1 and session.end >= w0 for w0, w1 in windows):
                continue
            profile = population.profile(session.user_id)
            uid = session.user_id
            key = str(uid)
            cc = profile.countrycode
            for t, bits, client_event, device_id, u_fault, u_dup, u_kind, u_aux in _session_events(
                session, offsets, population
            ):
                if malformed_share <= u_fault < late_bound:
                    emit, kind = t + delay, "late"
                else:
                    emit, kind = t, "valid"
                sent = start_ms <= emit < end_ms
                # Malformed records are never resent; the check on u_fault comes after the cheap ones.
                resent = (
                    resend_share > 0
                    and start_ms <= emit + resend < end_ms
                    and (bits & _RESEND_BITS) * _RESEND_SCALE < resend_share
                    and u_fault >= malformed_share
                )
                if not (sent or resent):
                    continue
                ts = _timestamp(t, ts_cache)
                event_id = uuid4_string(bits)
                event = {
                    "event_id": event_id,
                    "user_id": uid,
                    "device_id": device_id,
                    "client_event": client_event,
                    "client_timestamp": ts,
                    "countrycode": cc,
                }
                # Every value is an ASCII token from a fixed vocabulary, so this is exactly json.dumps.
                data = (
                    f'{{"event_id":"{event_id}","user_id":{uid},"device_id":"{device_id}",'
                    f'"client_event":"{client_event}","client_timestamp":"{ts}","countrycode":"{cc}"}}'
                ).encode()
                if u_fault < malformed_share:
                    reason = kinds[min(int(u_kind * len(kinds)), len(kinds) - 1)]
                    bad, found_id = malformed.build(reason, event, data, u_aux)
                    record = ProducedRecord(
                        bad, malformed.partition_key_for(bad), None, reason, found_id, t, emit
                    )
                    rows.append((emit, t, event_id, _ORIGINAL, record))
                    continue
                if sent:
                    record = ProducedRecord(data, key, event, kind, event_id, t, emit)
                    rows.append((emit, t, event_id, _ORIGINAL, record))
                    if u_dup < dup_share:
                        copy = ProducedRecord(data, key, event, "duplicate", event_id, t, emit)
                        rows.append((emit, t, event_id, _DUPLICATE, copy))
                if resent:
                    again = ProducedRecord(data, key, event, "resent", event_id, t, emit + resend)
                    rows.append((emit + resend, t, event_id, _RESENT, again))
    rows.sort(key=_row_key)
    return ProducedBatch(params, start, end, [row[4] for row in rows], dropped)

"""The generator's contract: schema, determinism, split-invariance and a realistic shape of traffic."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from include.events_schema import (
    CLIENT_EVENTS,
    COUNTRY_CODES,
    DEVICE_IDS,
    EVENT_FIELDS,
    USER_ID_MAX,
    USER_ID_MIN,
    format_client_timestamp,
    parse_client_timestamp,
)
from include.producer import ProducerParams, generate
from include.producer import generator as gen
from include.producer.generator import MIN_IDLE_MS, to_ms, uuid4_string
from include.producer.records import ms_to_datetime

from .conftest import HOUR

H_MS = 3_600_000


def _per_user(records):
    by_user = defaultdict(list)
    for r in records:
        by_user[r.event["user_id"]].append(r.event_ms)
    return {u: sorted(ts) for u, ts in by_user.items()}


def _bursts(times, gap_ms=MIN_IDLE_MS):
    """Split one user's sorted event times where the generator guarantees a session boundary."""
    bursts, current = [], [times[0]]
    for a, b in zip(times, times[1:], strict=False):
        if b - a >= gap_ms:
            bursts.append(current)
            current = []
        current.append(b)
    bursts.append(current)
    return bursts


def test_every_valid_event_matches_the_schema(clean_hour):
    assert len(clean_hour) > 100_000
    assert {r.kind for r in clean_hour.records} == {"valid"}
    assert all(r.partition_key == str(r.event["user_id"]) for r in clean_hour.records)
    for r in clean_hour.records[::7]:  # the full checks on a sample keep the test fast
        event = r.event
        assert tuple(event) == EVENT_FIELDS
        assert json.loads(r.data) == event
        assert json.dumps(event, separators=(",", ":")).encode() == r.data
        assert str(uuid.UUID(event["event_id"])) == event["event_id"]
        assert uuid.UUID(event["event_id"]).version == 4
        assert type(event["user_id"]) is int and USER_ID_MIN <= event["user_id"] <= USER_ID_MAX
        assert event["device_id"] in DEVICE_IDS
        assert event["client_event"] in CLIENT_EVENTS
        assert event["countrycode"] in COUNTRY_CODES
        ts = parse_client_timestamp(event["client_timestamp"])
        assert format_client_timestamp(ts) == event["client_timestamp"]
        assert to_ms(ts) == r.event_ms == r.emit_ms
        assert r.event_id == event["event_id"]
    assert len(set(clean_hour.event_ids())) == len(clean_hour)


def test_uuid_helper_matches_stdlib():
    rng = random.Random(1)
    for _ in range(1000):
        bits = rng.getrandbits(128)
        assert uuid4_string(bits) == str(uuid.UUID(int=bits, version=4))


def test_timestamps_render_like_events_schema():
    cache: dict[int, str] = {}
    for ms in (0, 999, 1_000, 1_764_238_530_123, 1_764_239_999_999, 4_102_444_800_000):
        assert gen._timestamp(ms, cache) == format_client_timestamp(ms_to_datetime(ms))


def test_order_is_client_timestamp_then_event_id(clean_hour):
    keys = [(r.event_ms, r.event_id) for r in clean_hour.records]
    assert keys == sorted(keys)
    start, end = to_ms(clean_hour.start), to_ms(clean_hour.end)
    assert all(start <= k[0] < end for k in keys)


def test_rerun_gives_identical_records(clean_hour):
    gen._raw_slot.cache_clear()
    gen._final_slot.cache_clear()
    again = generate(clean_hour.params, HOUR, HOUR + timedelta(minutes=10))
    expected = [r for r in clean_hour.records if to_ms(HOUR) <= r.emit_ms < to_ms(HOUR) + 600_000]
    assert again.records == expected


def test_seed_changes_everything():
    params = ProducerParams(seed=1, users=500, events_per_second=5)
    a = generate(params, HOUR, HOUR + timedelta(minutes=5))
    b = generate(ProducerParams(seed=2, users=500, events_per_second=5), HOUR, HOUR + timedelta(minutes=5))
    assert a.records != b.records
    assert not set(a.event_ids()) & set(b.event_ids())


def _split_points(rng, start_ms, end_ms, count):
    points = {start_ms + rng.randrange(end_ms - start_ms) for _ in range(count)}
    # Hour boundaries and points one millisecond either side of an event are the interesting ones.
    points |= {(start_ms // H_MS + 1) * H_MS}
    return sorted(p for p in points if start_ms < p < end_ms)


@pytest.mark.parametrize("seed", [0, 1])
def test_split_intervals_concatenate_to_the_whole(seed, faulty_params):
    params = ProducerParams(
        **{**faulty_params.to_dict(), "seed": seed, "malformed_kinds": faulty_params.malformed_kinds}
    )
    start = HOUR - timedelta(minutes=10)
    end = HOUR + timedelta(minutes=10)
    whole = generate(params, start, end)
    assert {r.kind for r in whole.records} >= {"valid", "late", "duplicate", "resent"}
    rng = random.Random(seed)
    s_ms, e_ms = to_ms(start), to_ms(end)
    points = _split_points(rng, s_ms, e_ms, 6)
    # Split exactly at, and one ms around, some record's send time.
    pivot = whole.records[len(whole.records) // 3].emit_ms
    points = sorted(set(points) | {pivot, pivot + 1, pivot - 1})
    bounds = [s_ms, *points, e_ms]
    parts = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        parts.extend(generate(params, ms_to_datetime(lo), ms_to_datetime(hi)).records)
    assert parts == whole.records


def test_split_invariance_with_sub_second_intervals():
    params = ProducerParams(seed=3, users=600, events_per_second=6)
    start = HOUR - timedelta(seconds=30)
    whole = generate(params, start, start + timedelta(minutes=1))
    assert len(whole) > 100
    pieces = []
    t = start
    while t < start + timedelta(minutes=1):
        nxt = min(t + timedelta(milliseconds=737), start + timedelta(minutes=1))
        pieces.extend(generate(params, t, nxt).records)
        t = nxt
    assert pieces == whole.records


def test_rate_is_the_configured_average(clean_hour):
    for hour_start in (HOUR - timedelta(hours=1), HOUR):
        lo = to_ms(hour_start)
        n = sum(1 for r in clean_hour.records if lo <= r.event_ms < lo + H_MS)
        assert n / 3600 == pytest.approx(20, rel=0.05)
    assert clean_hour.dropped_sessions == 0


def test_rate_does_not_dip_after_the_hour_boundary(clean_hour):
    """Sessions clashing with the previous slot are re-assigned, not dropped, so no gap opens at :00."""
    per_minute = Counter((r.event_ms // 60_000) for r in clean_hour.records)
    first_minutes = sum(per_minute[to_ms(HOUR) // 60_000 + i] for i in range(5)) / 5
    mean = len(clean_hour) / 120
    assert first_minutes > 0.85 * mean


def test_users_sessions_and_gaps(clean_hour):
    per_user = _per_user(clean_hour.records)
    assert len(per_user) > 1_000
    gaps = Counter()
    all_gaps = []
    for times in per_user.values():
        for a, b in zip(times, times[1:], strict=False):
            all_gaps.append(b - a)
    for g in all_gaps:
        # Inside a burst gaps are at most 60.5 s; between sessions of a user always more than 60 s (>= 61 s).
        assert not 60_500 < g < MIN_IDLE_MS, g
        gaps[
            "short" if g < 30_000 else "30-60s" if g < 60_000 else "boundary" if g <= 60_500 else "inter"
        ] += 1
    assert gaps["short"] > gaps["30-60s"] > gaps["boundary"] > 0
    assert gaps["inter"] > 0.05 * len(all_gaps)
    assert Counter(all_gaps)[60_000] > 0  # exactly at the session gap, sometimes
    # A single key (the busiest user) shows both kinds of gaps.
    busiest = max(per_user.values(), key=len)
    busiest_gaps = [b - a for a, b in zip(busiest, busiest[1:], strict=False)]
    assert min(busiest_gaps) < 60_000 < max(busiest_gaps)


def test_sessions_cross_minute_and_hour_boundaries(clean_hour):
    crosses_minute = crosses_hour = 0
    hour_ms = to_ms(HOUR)
    for times in _per_user(clean_hour.records).values():
        for burst in _bursts(times):
            if burst[0] // 60_000 != burst[-1] // 60_000:
                crosses_minute += 1
            if burst[0] < hour_ms <= burst[-1]:
                crosses_hour += 1
    assert crosses_minute > 1_000
    assert crosses_hour >= 3


def test_users_keep_country_and_some_use_several_devices(clean_hour):
    countries = defaultdict(set)
    devices = defaultdict(set)
    for e in clean_hour.valid_events():
        countries[e["user_id"]].add(e["countrycode"])
        devices[e["user_id"]].add(e["device_id"])
    assert all(len(c) == 1 for c in countries.values())
    spread = Counter(len(d) for d in devices.values())
    assert spread[1] > spread[2] > 0 and spread[3] > 0
    shares = Counter(c for (c,) in countries.values())
    assert shares.most_common(1)[0][0] == "US" and len(shares) > 15
    user_ids = set(countries)
    assert min(user_ids) >= 1 and max(user_ids) <= clean_hour.params.users


def test_funnel_is_plausible(clean_hour):
    per_user = defaultdict(list)
    for e in clean_hour.valid_events():
        per_user[e["user_id"]].append(e)
    counts = Counter(e["client_event"] for e in clean_hour.valid_events())
    window_start = to_ms(clean_hour.start)
    assert set(counts) == set(CLIENT_EVENTS)
    assert (
        counts["view_beer_list"]
        > counts["add_german_beer"]
        > counts["checkout"]
        > counts["payment_succeeded"]
    )
    for events in per_user.values():
        times = [to_ms(parse_client_timestamp(e["client_timestamp"])) for e in events]
        for burst_times in _bursts(times):
            burst = events[: len(burst_times)]
            events = events[len(burst_times) :]
            if burst_times[0] < window_start + gen.MAX_SESSION_MS:
                continue  # may have begun before the window: its start is not visible
            names = [e["client_event"] for e in burst]
            assert "login" not in names[1:]
            assert "logout" not in names[:-1]
            for i, name in enumerate(names):
                if name == "payment_succeeded":
                    assert names[i - 1] == "checkout"
                if name in ("checkout", "remove_beer"):
                    assert any(n.startswith("add_") for n in names[:i])


def test_fault_knobs_do_not_change_the_underlying_events():
    base = ProducerParams(seed=9, users=500, events_per_second=5)
    noisy = ProducerParams(
        seed=9,
        users=500,
        events_per_second=5,
        duplicate_fraction=0.3,
        resend_fraction=0.2,
        resend_delay_seconds=90,
    )
    a = generate(base, HOUR, HOUR + timedelta(minutes=10))
    b = generate(noisy, HOUR, HOUR + timedelta(minutes=10))
    assert a.valid_events() == b.valid_events()
    assert len(b) > len(a) and b.duplicates() and b.resent()


def test_interval_arguments_are_checked():
    params = ProducerParams(users=100, events_per_second=1)
    with pytest.raises(ValueError, match="start must be before end"):
        generate(params, HOUR, HOUR)
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        generate(params, datetime(2026, 1, 1), HOUR)
    with pytest.raises(ValueError, match="end must be a timezone-aware datetime, got '2026'"):
        generate(params, HOUR, "2026")
    big = ProducerParams(users=1_000_000, events_per_second=10_000)
    with pytest.raises(ValueError, match="more than 10,000,000 in one batch"):
        generate(big, HOUR, HOUR + timedelta(hours=1))


def test_non_utc_interval_bounds_are_the_same_instant():
    params = ProducerParams(seed=4, users=200, events_per_second=2)
    from zoneinfo import ZoneInfo

    local = HOUR.astimezone(ZoneInfo("Europe/Berlin"))
    assert generate(params, local, local + timedelta(minutes=3)).records == (
        generate(params, HOUR, HOUR + timedelta(minutes=3)).records
    )
    assert to_ms(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=1999)) % 1000 == 1


def test_airflow_pendulum_bounds_work():
    pendulum = pytest.importorskip("pendulum")
    params = ProducerParams(seed=4, users=200, events_per_second=2)
    start = pendulum.datetime(2026, 11, 27, 10, tz="UTC")
    assert generate(params, start, start.add(minutes=3)).records == (
        generate(params, HOUR, HOUR + timedelta(minutes=3)).records
    )

"""Fault knobs: late, duplicate, resent and malformed records, their counts and their ground-truth tags."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from include.config import PARTITION_QUERY
from include.events_schema import CLIENT_TIMESTAMP_RE, EVENT_FIELDS
from include.producer import MALFORMED_KINDS, RECORD_KINDS, ProducerParams, generate
from include.producer.generator import to_ms
from include.producer.malformed import BUILDERS, build, partition_key_for

from .conftest import HOUR

SAMPLE_EVENT = {
    "event_id": "0b7e5a55-6c1f-4a8e-9d3b-2f1c4e5d6a7b",
    "user_id": 42,
    "device_id": "mobile",
    "client_event": "view_cart",
    "client_timestamp": "2026-11-27T10:15:30.123Z",
    "countrycode": "DE",
}
SAMPLE_BYTES = json.dumps(SAMPLE_EVENT, separators=(",", ":")).encode()
#: Kinds whose records keep a valid client_timestamp (Firehose partitions them into the event's hour).
HOUR_PRESERVING = {
    "wrong_type",
    "unknown_device_id",
    "invalid_countrycode",
    "user_id_out_of_range",
    "empty_string",
    "duplicate_field",
}


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def strict_loads(data: bytes):
    """JSON as the spec (and the compaction) reads it: strict UTF-8, no NaN or Infinity."""
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)


def _variants(kind, steps=200):
    """Every variant of a kind, by sweeping the variant draw."""
    return {build(kind, SAMPLE_EVENT, SAMPLE_BYTES, (i + 0.5) / steps) for i in range(steps)}


def test_kinds_are_the_shared_reason_codes():
    assert set(BUILDERS) == set(MALFORMED_KINDS)
    assert RECORD_KINDS[:4] == ("valid", "late", "duplicate", "resent")


def test_counts_follow_the_fractions(faulty_hour, faulty_params):
    counts = faulty_hour.counts_by_kind()
    malformed = sum(counts.get(k, 0) for k in MALFORMED_KINDS)
    on_time = counts["valid"] + malformed  # events of the hour that were not held back as late
    base = on_time / (1 - faulty_params.late_fraction)
    assert base / 3600 == pytest.approx(faulty_params.events_per_second, rel=0.06)
    assert malformed / base == pytest.approx(faulty_params.malformed_fraction, rel=0.1)
    assert counts["late"] / base == pytest.approx(faulty_params.late_fraction, rel=0.1)
    good = counts["valid"] + counts["late"]
    assert counts["duplicate"] / good == pytest.approx(faulty_params.duplicate_fraction, rel=0.15)
    # resent copies of this hour's records are sent in it, their originals' rate is the same before it
    assert counts["resent"] / good == pytest.approx(faulty_params.resend_fraction, rel=0.15)
    assert set(counts) == set(RECORD_KINDS)  # every reason code shows up in an hour
    assert len(faulty_hour.valid_events()) == good
    assert len(faulty_hour.on_time_events()) == counts["valid"]
    assert len(faulty_hour.late_events()) == counts["late"]


def test_late_events_are_older_than_the_interval_by_the_delay(faulty_hour, faulty_params):
    start, end = to_ms(faulty_hour.start), to_ms(faulty_hour.end)
    delay = faulty_params.late_delay_ms
    late = [r for r in faulty_hour.records if r.kind == "late"]
    assert late
    for r in late:
        assert r.emit_ms - r.event_ms == delay
        assert start - delay <= r.event_ms < end - delay
        assert r.event_ms < start  # the delay (4000 s) is longer than the interval (1 h)
        assert to_ms(datetime.fromisoformat(r.event["client_timestamp"])) == r.event_ms
    # Send order puts a late record where it is sent, not at its old client_timestamp.
    emits = [r.emit_ms for r in faulty_hour.records]
    assert emits == sorted(emits)


def test_late_events_are_held_back_not_lost(faulty_params):
    """An event is sent once: on time, or late in the interval that covers its time plus the delay."""
    start, end = HOUR, HOUR + timedelta(minutes=10)
    delay = timedelta(milliseconds=faulty_params.late_delay_ms)
    clean = ProducerParams(
        **{
            **faulty_params.to_dict(),
            "late_fraction": 0.0,
            "malformed_fraction": 0.0,
            "malformed_kinds": MALFORMED_KINDS,
        }
    )
    everything = set(generate(clean, start, end).event_ids())
    faulty = generate(faulty_params, start, end)
    later = generate(faulty_params, start + delay, end + delay)
    on_time = {e["event_id"] for e in faulty.on_time_events()}
    held_back = {e["event_id"] for e in later.late_events()}
    malformed_ids = {r.event_id for r in faulty.malformed()}
    assert held_back and not on_time & held_back
    assert on_time | held_back <= everything
    # What is missing from both is exactly what was turned into malformed records.
    missing = everything - on_time - held_back
    assert len(missing) == len(faulty.malformed())
    assert {i for i in malformed_ids if i} <= missing


def test_duplicates_repeat_the_exact_record(faulty_hour):
    records = faulty_hour.records
    dups = 0
    for i, r in enumerate(records):
        if r.kind == "duplicate":
            dups += 1
            original = records[i - 1]
            assert original.kind in ("valid", "late")
            assert (original.data, original.partition_key, original.event_id) == (
                r.data,
                r.partition_key,
                r.event_id,
            )
    assert dups > 100
    ids = [r.event_id for r in records if r.kind in ("valid", "late")]
    assert len(ids) == len(set(ids))


def test_resent_copies_repeat_their_original_after_the_delay(faulty_params):
    """Every copy is the exact record sent resend_delay_seconds before it; malformed records are never resent,
    and a copy is a new record, not a new event."""
    start = HOUR + timedelta(minutes=2)
    originals = generate(faulty_params, start - timedelta(minutes=10), start + timedelta(minutes=10))
    copies = generate(faulty_params, start, start + timedelta(minutes=10)).resent()
    resend = faulty_params.resend_delay_ms
    assert resend == 300_000 and len(copies) > 100
    sent_at = {(r.event_id, r.emit_ms): r for r in originals.records if r.kind in ("valid", "late")}
    for copy in copies:
        original = sent_at[(copy.event_id, copy.emit_ms - resend)]
        assert (copy.data, copy.partition_key, copy.event, copy.event_ms) == (
            original.data,
            original.partition_key,
            original.event,
            original.event_ms,
        )
    assert {r.emit_ms - r.event_ms for r in copies} == {resend, resend + faulty_params.late_delay_ms}
    malformed_ids = {r.event_id for r in originals.malformed()}
    assert not malformed_ids & {r.event_id for r in copies}
    # the copies' events were first sent before the interval or in it, never counted again
    later = generate(faulty_params, start, start + timedelta(minutes=10))
    assert len(later.valid_events()) == sum(1 for r in later.records if r.kind in ("valid", "late"))


def test_resend_delay_only_moves_the_copies(faulty_params):
    """Turning the knob changes which records are sent again and when, never the underlying events."""
    values = faulty_params.to_dict()
    start, end = HOUR, HOUR + timedelta(minutes=10)
    without = generate(ProducerParams.from_dict({**values, "resend_fraction": 0.0}), start, end)
    soon = generate(ProducerParams.from_dict({**values, "resend_delay_seconds": 60}), start, end)
    assert [r for r in soon.records if r.kind != "resent"] == without.records
    assert {r.emit_ms - r.event_ms for r in soon.resent()} == {60_000, 60_000 + faulty_params.late_delay_ms}


def test_malformed_records_are_tagged_and_not_valid(faulty_hour):
    hour_prefix = faulty_hour.start.strftime("%Y-%m-%dT")
    for r in faulty_hour.malformed():
        assert r.event is None and r.kind in MALFORMED_KINDS
        assert r.emit_ms == r.event_ms
        assert r.partition_key == partition_key_for(r.data)
        try:
            obj = strict_loads(r.data)
        except ValueError:
            continue
        if isinstance(obj, dict) and r.kind in HOUR_PRESERVING:
            assert obj["client_timestamp"].startswith(hour_prefix)
            assert CLIENT_TIMESTAMP_RE.match(obj["client_timestamp"])


def test_malformed_event_id_is_what_a_parser_finds(faulty_hour):
    for r in faulty_hour.malformed():
        try:
            obj = strict_loads(r.data)
        except ValueError:
            assert r.event_id is None
            continue
        found = obj.get("event_id") if isinstance(obj, dict) else None
        assert r.event_id == (found if isinstance(found, str) and found else None)


def test_every_variant_breaks_the_contract_once():
    for kind in MALFORMED_KINDS:
        for data, _ in _variants(kind):
            assert data != SAMPLE_BYTES, kind
            if kind == "invalid_utf8" and b"\\ud800" not in data:
                with pytest.raises(UnicodeDecodeError):
                    data.decode("utf-8")
                continue
            if kind == "invalid_json":
                with pytest.raises(ValueError):
                    strict_loads(data)
                continue
            obj = json.loads(data)
            if kind == "not_an_object":
                assert not isinstance(obj, dict)
            elif kind == "missing_field":
                assert len(obj) == len(EVENT_FIELDS) - 1
            elif kind == "duplicate_field":
                assert data.count(b'":') == len(EVENT_FIELDS) + 1


def test_timestamp_variants_split_by_fromisoformat():
    """unparseable: nothing ISO-like parses it; not_utc: ISO-8601 but not the Z-with-milliseconds form."""
    for kind, parses in (("unparseable_timestamp", False), ("timestamp_not_utc", True)):
        values = {json.loads(data)["client_timestamp"] for data, _ in _variants(kind)}
        assert len(values) >= 4
        for value in values:
            assert not CLIENT_TIMESTAMP_RE.match(value) or kind == "unparseable_timestamp"
            try:
                datetime.fromisoformat(value)
                ok = True
            except ValueError:
                ok = False
            assert ok is parses, value


def test_firehose_partitions_hour_preserving_kinds_into_the_event_hour():
    jq = pytest.importorskip("jq")
    query = jq.compile(PARTITION_QUERY)
    for kind in HOUR_PRESERVING:
        for data, _ in _variants(kind):
            assert query.input_text(data.decode()).first() == {"event_date": "2026-11-27", "event_hour": "10"}
    words = next(d for d, _ in _variants("unparseable_timestamp") if b"yesterday" in d)
    with pytest.raises(ValueError, match="not ISO-8601"):
        query.input_text(words.decode()).first()


def test_compaction_validator_gives_the_same_reason_codes(faulty_hour):
    """The producer's tags and the compaction's quarantine reasons must agree record by record."""
    validation = pytest.importorskip("include.compaction.validation")
    validator = validation.RecordValidator(None, datetime(2100, 1, 1, tzinfo=UTC), timedelta(minutes=5))
    mismatches = Counter()
    for r in faulty_hour.records:
        verdict = validator.validate(r.data)
        if r.is_malformed:
            got = verdict.reason if isinstance(verdict, validation.Rejection) else "accepted"
            if got != r.kind:
                mismatches[(r.kind, got, r.data[:90])] += 1
        else:
            assert not isinstance(verdict, validation.Rejection), (r, verdict)
    assert not mismatches, mismatches


def test_malformed_kinds_can_be_restricted():
    params = ProducerParams(
        seed=2,
        users=500,
        events_per_second=5,
        malformed_fraction=0.5,
        malformed_kinds=("wrong_type", "empty_string"),
    )
    batch = generate(params, HOUR, HOUR + timedelta(minutes=10))
    kinds = {r.kind for r in batch.malformed()}
    assert kinds == {"wrong_type", "empty_string"}


def test_partition_keys_of_malformed_records():
    assert partition_key_for(b'{"user_id": 0}') == "0"
    assert partition_key_for(b'{"user_id": "abc"}').startswith("x-")
    assert partition_key_for(b"\xff") == partition_key_for(b"\xff")
    assert partition_key_for(b"[1]") != partition_key_for(b"[2]")
    assert len(partition_key_for(b"{")) <= 256

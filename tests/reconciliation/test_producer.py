"""Produced events (the real producer, with late, duplicate and malformed knobs) against the stream's outputs
modelled by the Python reference: every session of the hour is matched or explained, and the hour passes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from include.producer.generator import generate
from include.producer.params import ProducerParams
from include.reconciliation import STATUS_PASSED, ReconcileOptions, reconcile_hour
from include.reconciliation.offline import read_inputs
from tests.reconciliation.helpers import CONTRACT, H, write_jsonl
from tests.reconciliation.stream_model import stream_outputs

pytestmark = pytest.mark.slow


def produce(tmp_path, **knobs):
    params = ProducerParams(seed=11, users=3000, events_per_second=6, **knobs)
    batch = generate(params, H - timedelta(minutes=20), H + timedelta(hours=1, minutes=45))
    sessions, late, rejected = stream_outputs(batch.records, CONTRACT)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(r.data + b"\n" for r in batch.records))
    files = (
        events,
        write_jsonl(tmp_path / "sessions.jsonl", sessions),
        write_jsonl(tmp_path / "late.jsonl", late),
        write_jsonl(tmp_path / "rejected.jsonl", rejected),
    )
    return batch, late, rejected, reconcile_hour(H, read_inputs(*files), ReconcileOptions())


def test_no_faults_is_100_percent_matched(tmp_path):
    _, late, rejected, result = produce(tmp_path)
    report = result.report
    assert not late and not rejected
    assert report.status == STATUS_PASSED
    assert report.counts["matched"] == report.totals["batch"]["sessions"] > 1000
    assert report.totals["match_rate"] == 1.0 and report.differences == []


@pytest.mark.parametrize(
    "knobs",
    [
        {"late_fraction": 0.02, "late_delay_seconds": 120.0},
        {"duplicate_fraction": 0.05},
        {"malformed_fraction": 0.02},
        {"resend_fraction": 0.03, "resend_delay_seconds": 900.0},
        {
            "late_fraction": 0.01,
            "duplicate_fraction": 0.02,
            "malformed_fraction": 0.01,
            "late_delay_seconds": 900.0,
        },
    ],
    ids=["late", "duplicates", "malformed", "resent", "all"],
)
def test_faults_are_all_explained(tmp_path, knobs):
    batch, late, _, result = produce(tmp_path, **knobs)
    report = result.report
    unexplained = [
        d for d in report.differences if d["cause"] not in ("late", "duplicate", "rule_difference")
    ]
    assert unexplained == [], json.dumps(unexplained[:3], indent=1)
    assert report.status == STATUS_PASSED, report.summary()
    assert report.totals["unexplained_events"] == 0
    if knobs.get("late_fraction"):
        assert late and report.counts["late"] > 10
    if knobs.get("duplicate_fraction"):
        # copies sent right after the original: deduplicated by both sides, so matched, but counted as raw copies
        assert report.totals["batch"]["extra_raw_copies"] > 100
        assert report.totals["batch"]["duplicates_removed"] == len(batch.duplicates())
    if knobs.get("resend_fraction"):
        # copies sent 15 min after the original, past the 10 min dedup horizon: the stream has forgotten the
        # event_id, but the copy is far behind the watermark, so it is late, not counted in a session again
        resent = batch.resent()
        assert {row["event_id"] for row in late} == {r.event_id for r in resent}
        assert report.counts["matched"] == report.totals["batch"]["sessions"]
        # copies of events first sent before the generated interval are the only record of their event
        first_sent = {r.event_id for r in batch.records if r.kind in ("valid", "late")}
        assert (
            report.totals["batch"]["duplicates_removed"] == sum(r.event_id in first_sent for r in resent) > 0
        )
    if knobs.get("malformed_fraction"):
        assert report.counts["rule_difference"] > 0
        assert report.totals["batch"]["quarantined"] == len(batch.malformed())

"""The page's summaries on small hand-made inputs: match rate, status, counts order, histogram bins."""

from __future__ import annotations

import re

import pytest
from clickstream import analytics


def test_match_rate_leaves_out_rows_that_are_not_compared():
    counts = {"matched": 90, "late": 5, "mismatch": 5, "deferred": 40, "batch_only": 7}
    assert analytics.match_rate(counts) == 0.9
    assert analytics.match_rate({"deferred": 3}) is None


def test_the_reports_own_match_rate_wins_over_the_counts():
    report = {"passed": True, "counts": {"matched": 1, "late": 1}, "totals": {"match_rate": 0.25}}
    assert analytics.report_match_rate(report) == 0.25
    assert analytics.report_match_rate({"passed": True, "counts": {"matched": 1, "late": 1}}) == 0.5


def test_status_comes_from_the_report():
    assert analytics.hour_status(None) == "not_reconciled"
    assert analytics.hour_status({"passed": False, "counts": {}}) == "failed"
    assert analytics.hour_status({"passed": True, "status": "batch_only", "counts": {}}) == "batch_only"


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ([], "a report must be a JSON object, got list"),
        ({"counts": {}}, "field 'passed' must be true or false, got None"),
        ({"passed": True, "counts": []}, "field 'counts' must be an object, got []"),
        ({"passed": True, "counts": {"late": -1}}, "counts.late must be a count, got -1"),
        ({"passed": True, "counts": {"late": True}}, "counts.late must be a count, got True"),
    ],
)
def test_a_report_of_another_shape_is_refused_naming_the_field(report, message):
    with pytest.raises(analytics.ReportShapeError, match=f"^{re.escape(f's3://b/k: {message}')}$"):
        analytics.check_report(report, "s3://b/k")


def test_counts_list_every_known_cause_first_then_the_others():
    ordered = analytics.ordered_counts({"zeta": 2, "late": 3})
    assert list(ordered) == [*analytics.CAUSES, "zeta"]
    assert (ordered["late"], ordered["matched"], ordered["zeta"]) == (3, 0, 2)


def test_duration_bins_are_half_open():
    counts = analytics.duration_histogram([0, 999, 1_000, 59_999, 60_000, 1_199_999, 1_200_000, 10**9])
    labels = [label for _, label in analytics.DURATION_BINS]
    assert dict(zip(labels, counts, strict=True)) == {
        "< 1 s": 2,
        "1–10 s": 1,
        "10–30 s": 0,
        "30–60 s": 1,
        "1–2 min": 1,
        "2–5 min": 0,
        "5–10 min": 0,
        "10–20 min": 1,
        "≥ 20 min": 2,
    }

"""What the page shows, computed from rows already read: pure functions, no S3, so they are easy to check.

The reconciliation report is issue 10's ``{"hour", "passed", "counts": {cause: n, …, "deferred": n}, "totals",
"differences"}``; an hour's status is ``passed``/``failed`` from ``passed`` (or the report's own ``status`` when it
has one, e.g. ``batch_only``), ``not_reconciled`` when there is no report and ``invalid_report`` when the report
cannot be read as that shape.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

#: Causes of issue 10 in display order; a report may carry others, which are shown after these.
CAUSES = (
    "matched",
    "late",
    "duplicate",
    "rule_difference",
    "missing_in_stream",
    "missing_in_batch",
    "mismatch",
    "deferred",
)
#: Rows that are counted but not compared, so they are not part of the match rate's denominator.
NOT_COMPARED = frozenset({"deferred", "batch_only"})

#: Session duration histogram: (upper bound in ms, exclusive; label).
DURATION_BINS: tuple[tuple[float, str], ...] = (
    (1_000, "< 1 s"),
    (10_000, "1–10 s"),
    (30_000, "10–30 s"),
    (60_000, "30–60 s"),
    (120_000, "1–2 min"),
    (300_000, "2–5 min"),
    (600_000, "5–10 min"),
    (1_200_000, "10–20 min"),
    (math.inf, "≥ 20 min"),
)


class ReportShapeError(ValueError):
    """A report.json that is not issue 10's shape; the message names the field."""


def check_report(report: Any, where: str) -> dict:
    """The report when it has issue 10's ``passed`` and ``counts``; ReportShapeError naming the field otherwise."""
    if not isinstance(report, dict):
        raise ReportShapeError(f"{where}: a report must be a JSON object, got {type(report).__name__}")
    if not isinstance(report.get("passed"), bool):
        raise ReportShapeError(f"{where}: field 'passed' must be true or false, got {report.get('passed')!r}")
    counts = report.get("counts")
    if not isinstance(counts, dict):
        raise ReportShapeError(f"{where}: field 'counts' must be an object, got {counts!r}")
    for cause, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ReportShapeError(f"{where}: counts.{cause} must be a count, got {value!r}")
    return report


def match_rate(counts: dict[str, int]) -> float | None:
    """matched / compared rows (every cause except deferred and batch_only); None when nothing was compared."""
    compared = sum(n for cause, n in counts.items() if cause not in NOT_COMPARED)
    return counts.get("matched", 0) / compared if compared else None


def report_match_rate(report: dict) -> float | None:
    """The report's own match rate (``totals.match_rate``, or top-level) when it has one, else from counts."""
    totals = report.get("totals") if isinstance(report.get("totals"), dict) else {}
    for rate in (totals.get("match_rate"), report.get("match_rate")):
        if isinstance(rate, int | float) and not isinstance(rate, bool):
            return float(rate)
    return match_rate(report["counts"])


def ordered_counts(counts: dict[str, int]) -> dict[str, int]:
    """Every known cause (0 when absent) in display order, then any other cause the report has."""
    out = {cause: int(counts.get(cause, 0)) for cause in CAUSES}
    out.update({cause: int(n) for cause, n in sorted(counts.items()) if cause not in out})
    return out


def hour_status(report: dict | None) -> str:
    if report is None:
        return "not_reconciled"
    status = report.get("status")
    if isinstance(status, str) and status:
        return status.lower()
    return "passed" if report["passed"] else "failed"


def compaction_summary(manifest: dict | None) -> dict[str, Any] | None:
    if manifest is None:
        return None
    counts = manifest.get("counts") or {}
    return {
        "compacted": True,
        "valid": counts.get("valid"),
        "written_rows": counts.get("written_rows"),
        "duplicates_removed": counts.get("duplicates_removed"),
        "quarantined": counts.get("quarantined"),
        "created_at": manifest.get("created_at"),
    }


def minute_of(value: Any) -> str:
    """``YYYY-MM-DDTHH:MM`` of a wire timestamp string or a datetime (batch Parquet may hold either)."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    if not isinstance(value, str) or len(value) < 16:
        raise ValueError(f"not a timestamp: {value!r}")
    return value[:16]


def minutes_of_window(start: datetime, end: datetime) -> list[str]:
    count = int((end - start) / timedelta(minutes=1))
    return [(start + timedelta(minutes=i)).strftime("%Y-%m-%dT%H:%M") for i in range(count)]


def per_minute(minutes: list[str], stamps: Iterable[Any]) -> list[int]:
    """How many of ``stamps`` fall in each of ``minutes`` (stamps outside them are not counted)."""
    counter = Counter(minute_of(s) for s in stamps)
    return [counter.get(m, 0) for m in minutes]


def duration_histogram(durations_ms: Iterable[int | float]) -> list[int]:
    counts = [0] * len(DURATION_BINS)
    for value in durations_ms:
        for i, (upper, _) in enumerate(DURATION_BINS):
            if value < upper:
                counts[i] += 1
                break
    return counts


def ms_between(earlier: str | None, later: str | None) -> int | None:
    """Milliseconds from one wire timestamp to another, None when either is missing or unreadable."""
    try:
        a = datetime.fromisoformat(str(earlier).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(later).replace("Z", "+00:00"))
    except ValueError:
        return None
    return round((b - a) / timedelta(milliseconds=1))

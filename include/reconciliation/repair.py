"""The repair of an hour the stream got wrong: after a stream outage is fixed, a repair run of the hour (a
backfill with ``repair: true``) serves the batch sessions, which are complete whatever the stream did, and the
report records it.

The batch layer can stand in for sessions the stream *missed* (``missing_in_stream``) or got *wrong*
(``mismatch``, e.g. a session cut in two by the restart); it cannot stand in for sessions only the stream has
(``missing_in_batch``: raw data lost before compaction), so an hour with too many of those stays failed. The
repair block carries the status of the first report that was repaired, so repeated repair runs publish the
same report.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from include.reconciliation.report import STATUS_FAILED, STATUS_REPAIRED, Report

#: Differences the published batch sessions repair.
REPAIRABLE = ("missing_in_stream", "mismatch")


def apply_repair(report: Report, previous: dict[str, Any] | None, repair: bool) -> Report:
    """The report of a repair run: ``repaired`` when the hour failed only on repairable differences.

    ``previous`` is the hour's prior report.json (None when there is none). Without ``repair`` the report is
    returned unchanged, so an ordinary rerun republishes identical bytes.
    """
    if not repair or report.status != STATUS_FAILED:
        return report
    share = report.thresholds["max_unexplained_share"]
    unrepairable = report.counts.get("missing_in_batch", 0)
    if unrepairable > share * report.totals["batch"]["sessions"]:
        return report
    earlier = (previous or {}).get("repair") or {}
    previous_status = earlier.get("previous_status") or (previous or {}).get("status") or "none"
    repaired = {cause: int(report.counts.get(cause, 0)) for cause in REPAIRABLE}
    block = {
        "previous_status": previous_status,
        "repaired_by_batch": sum(repaired.values()),
        "repaired_by_cause": repaired,
        "how": "the hour's batch sessions (batch/sessions/) are complete and authoritative; they replace the "
        "stream's sessions of this hour",
    }
    return dataclasses.replace(report, status=STATUS_REPAIRED, passed=True, repair=block)

"""Hourly stream<->batch reconciliation (issue 10): batch sessions of an hour from the compacted events, every
session's cause, the report. Airflow-free; the DAG and ``clickstream reconcile`` call the same functions.

Modules, one job each: ``options`` (hour window, tunables), ``inputs`` (what a run reads, DuckDB views),
``offline`` (local files -> inputs), ``s3_io`` (the S3 layout -> inputs, results -> S3), ``layout`` (keys),
``hour_sessions`` (batch sessions), ``classify`` (causes), ``report`` (report.json, differences),
``reconcile`` (the run), ``athena`` (the CTAS renders for hours too big for one worker).
"""

from include.reconciliation.inputs import HourInputs
from include.reconciliation.options import HourWindow, ReconcileOptions
from include.reconciliation.reconcile import HourResult, reconcile_hour
from include.reconciliation.report import STATUS_BATCH_ONLY, STATUS_FAILED, STATUS_PASSED, Report

__all__ = [
    "STATUS_BATCH_ONLY",
    "STATUS_FAILED",
    "STATUS_PASSED",
    "HourInputs",
    "HourResult",
    "HourWindow",
    "ReconcileOptions",
    "Report",
    "reconcile_hour",
]

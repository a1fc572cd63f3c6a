"""Hourly stream<->batch reconciliation (issue 10): batch sessions of an hour from the compacted events, every
session's cause, the report. Airflow-free; the DAG and ``clickstream reconcile`` call the same functions.

Modules, one job each: ``options`` (hour window, tunables), ``inputs`` (what a run reads, DuckDB views),
``offline`` (local files -> inputs), ``s3_io`` (the S3 layout -> inputs, results -> S3), ``layout`` (keys),
``hour_sessions`` (batch sessions), ``classify`` (causes), ``report`` (report.json, differences),
``reconcile`` (the run), ``athena`` (the CTAS renders for hours too big for one worker), ``params`` (the DAG's
params), ``progress`` (the stream's progress marker), ``repair`` (repair runs), ``catalog`` (the ``sessions``
Glue table), ``tasks`` (the DAG's task bodies).

The names below are imported on first use, so a DAG file can import :mod:`include.reconciliation.params`
without loading DuckDB and pyarrow at parse time.
"""

from __future__ import annotations

from include.lazy_exports import lazy_exports

_EXPORTS = {
    "HourInputs": "include.reconciliation.inputs",
    "HourWindow": "include.reconciliation.options",
    "ReconcileOptions": "include.reconciliation.options",
    "HourResult": "include.reconciliation.reconcile",
    "reconcile_hour": "include.reconciliation.reconcile",
    "STATUS_BATCH_ONLY": "include.reconciliation.report",
    "STATUS_FAILED": "include.reconciliation.report",
    "STATUS_PASSED": "include.reconciliation.report",
    "STATUS_REPAIRED": "include.reconciliation.report",
    "Report": "include.reconciliation.report",
    "ReconcileParams": "include.reconciliation.params",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

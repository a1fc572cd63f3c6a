"""Reconcile one hour: batch sessions from the compacted events, classification, report. The one
implementation behind the DAG and ``clickstream reconcile``.

    inputs = s3_io.download_hour_inputs(s3, bucket, settings, hour, work_dir)      # or offline.read_inputs(...)
    result = reconcile_hour(hour, inputs, ReconcileOptions.from_settings(settings))
    s3_io.publish_hour(s3, bucket, settings, hour, result, work_dir)                # or result.write(directory)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from include.reconciliation import hour_sessions, layout
from include.reconciliation.classify import classify
from include.reconciliation.inputs import HourInputs, register_inputs
from include.reconciliation.options import HourWindow, ReconcileOptions
from include.reconciliation.report import Report, build_report, differences_table, write_differences


@dataclass
class HourResult:
    """The report plus the tables to publish: the hour's batch sessions and every difference."""

    report: Report
    sessions: pa.Table
    differences: pa.Table
    stages: dict[str, float] = field(default_factory=dict)

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write sessions Parquet, report.json and differences.parquet into ``directory`` (local names)."""
        directory = Path(directory)
        return {
            "sessions": hour_sessions.write_hour_sessions(
                self.sessions, directory / layout.SESSIONS_FILE_NAME
            ),
            "report": self.report.write(directory / layout.REPORT_FILE_NAME),
            "differences": write_differences(self.differences, directory / layout.DIFFERENCES_FILE_NAME),
        }


def connect(options: ReconcileOptions) -> duckdb.DuckDBPyConnection:
    config = {"threads": options.threads} if options.threads else {}
    return duckdb.connect(":memory:", config=config)


def reconcile_hour(hour: datetime, inputs: HourInputs, options: ReconcileOptions | None = None) -> HourResult:
    """Batch sessions of ``hour`` from ``inputs.batch_events``, each compared session's cause, the report."""
    options = options or ReconcileOptions()
    window = HourWindow.of(hour, options)
    stages: dict[str, float] = {}
    con = connect(options)
    try:
        t0 = time.perf_counter()
        views = register_inputs(con, inputs)
        batch = hour_sessions.build(con, views["batch_events"], window, options)
        stages["batch_sessions"] = time.perf_counter() - t0
        stages["classify"] = classify(con, views, batch, window, options)
        t0 = time.perf_counter()
        report = build_report(con, views, batch, window, options, inputs.batch_counts)
        sessions = hour_sessions.hour_sessions_table(con, batch.window_table)
        differences = differences_table(con)
        stages["report"] = time.perf_counter() - t0
    finally:
        con.close()
    return HourResult(report, sessions, differences, {k: round(v, 3) for k, v in stages.items()})

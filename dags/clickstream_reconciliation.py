"""
### clickstream_reconciliation

Every hour, compares the stream's 1-minute sessions of one **session-start hour** H (the run's data interval)
with the batch sessions recomputed from the compacted events, explains every difference, and publishes the
batch sessions as the authoritative `sessions` table. See `docs/reconciliation.md`.

1. `wait_for_inputs` — a reschedule-mode sensor (no busy worker slot) until every compacted hour H's batch
   reads (H − gap … H + 1 h + settle minutes) has its manifest **and** the stream's progress marker (the largest
   committed `window_end` of its per-minute metrics) has passed the settle horizon, so sessions are never
   compared before the stream has closed them. It times out after `CLICKSTREAM_RECONCILE_WAIT_TIMEOUT_MINUTES`
   (default 6 h), which fails the task and alerts.
2. `reconcile` — downloads the hour's inputs, classifies every session (matched, late, duplicate,
   rule_difference, missing_in_stream, missing_in_batch, mismatch, deferred) and publishes
   `batch/sessions/dt=…/hr=…/part-00000.parquet`, `reports/reconciliation/dt=…/hr=…/differences.parquet` and
   `report.json` (last), then the hour's `sessions` partition with its status. Logs a short summary and emits an
   asset event whose extra holds the counts.
3. `check` — a failed hour publishes an SNS alert (counts per cause, report location, the repair command) and
   fails without retrying.
4. `complete_earlier_hours` — sessions of an earlier hour still open at its settle horizon (`deferred`) were
   published as far as that horizon: each of the last `CLICKSTREAM_RECONCILE_COMPLETE_HOURS` (3) hours that has
   some is reconciled again, read up to this run's horizon, and republished (files, partition, an asset event
   per hour); a completed hour that fails alerts like `check`. A rerun of a past hour reads as far as its
   inputs are in, so it publishes the completed sessions too.

A deadline alert fires when an hour is not reconciled `CLICKSTREAM_RECONCILE_DEADLINE_MINUTES` (default 3 h)
after its end. Reruns publish identical files. Backfill: `airflow backfill create --dag-id
clickstream_reconciliation --from-date … --to-date …`; hours before the stream existed are `batch_only`; a repair
after a stream outage adds `--dag-run-conf '{"repair": true}'`. Params: `ReconcileParams` in
`include/reconciliation/params.py`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import (
    DAG,
    Asset,
    AssetAlias,
    DeadlineAlert,
    DeadlineReference,
    PokeReturnValue,
    SyncCallback,
    task,
)
from airflow.timetables.interval import CronDataIntervalTimetable

from include.callbacks import alert_on_missed_deadline
from include.config import settings
from include.dag_params import airflow_params
from include.dag_policy import START_DATE, default_args, tags
from include.reconciliation.params import ReconcileParams

RECONCILED_SESSIONS = Asset("clickstream_sessions", uri="s3://clickstream-lake/batch/sessions")
#: The hours complete_earlier_hours republishes, each as a RECONCILED_SESSIONS event.
COMPLETED_HOURS = AssetAlias("clickstream_sessions_completed")
_CFG = settings()

with DAG(
    dag_id="clickstream_reconciliation",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    default_args=default_args(retries=2),
    tags=tags("quality", 1),
    params=airflow_params(ReconcileParams),
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_LOGICAL_DATE,
        # The logical date is the start of the hour: the deadline counts from its end.
        interval=timedelta(hours=1, minutes=_CFG.reconcile_deadline_minutes),
        callback=SyncCallback(alert_on_missed_deadline),
        name="hour_not_reconciled",
    ),
):

    @task.sensor(
        poke_interval=timedelta(minutes=1),
        timeout=timedelta(minutes=_CFG.reconcile_wait_timeout_minutes),
        mode="reschedule",
    )
    def wait_for_inputs(data_interval_start=None, params=None) -> PokeReturnValue:
        import logging

        from include.reconciliation.tasks import readiness

        state = readiness(data_interval_start, params)
        if not state["ready"]:
            logging.getLogger(__name__).info("hour %s not ready: %s", state["hour"], state)
        return PokeReturnValue(is_done=state["ready"], xcom_value=state)

    @task(outlets=[RECONCILED_SESSIONS])
    def reconcile(data_interval_start=None, params=None, outlet_events=None) -> dict:
        from include.reconciliation.tasks import asset_extra, reconcile_interval

        summary = reconcile_interval(data_interval_start, params)
        outlet_events[RECONCILED_SESSIONS].extra = asset_extra(summary)
        return summary

    # One at a time across runs: two runs completing the same earlier hour would race on its files.
    @task(outlets=[COMPLETED_HOURS], max_active_tis_per_dag=1)
    def complete_earlier_hours(data_interval_start=None, params=None, outlet_events=None) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from include.reconciliation.tasks import ReconciliationFailed, asset_extra, complete_earlier_hours

        try:
            result = complete_earlier_hours(data_interval_start, params)
        except ReconciliationFailed as exc:
            raise AirflowFailException(str(exc)) from exc
        for summary in result["completed"]:  # an asset event per republished hour, none when nothing was
            outlet_events[COMPLETED_HOURS].add(RECONCILED_SESSIONS, extra=asset_extra(summary))
        return result

    @task
    def check(summary: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from include.reconciliation.tasks import ReconciliationFailed, check_hour

        try:
            return check_hour(summary)
        except ReconciliationFailed as exc:
            raise AirflowFailException(str(exc)) from exc

    summary = reconcile()
    wait_for_inputs() >> summary >> complete_earlier_hours()
    check(summary)

"""
### clickstream_flink_lifecycle

Starts or stops the Managed Service for Apache Flink application that builds the sessions, with the amazon
provider's `KinesisAnalyticsV2StartApplicationOperator` / `KinesisAnalyticsV2StopApplicationOperator` and their
completion sensors — the same tasks against AWS and against the local endpoint.

Params (defaults and help from `LifecycleParams` in `include/flink_lifecycle.py`):
* `action`: `start` or `stop`.
* `restore`: on start, `RESTORE_FROM_LATEST_SNAPSHOT` (default: resume where the last stop left off, no lost
  and no duplicated sessions), `SKIP_RESTORE_FROM_SNAPSHOT` (start fresh from the stream's retention).
* `force`: on stop, `false` (default) takes a snapshot first; `true` stops at once without one, losing the
  in-flight session state (the reconciliation DAG reports those sessions as missing).

Start is idempotent: an application that is already `RUNNING` is left alone and the run succeeds.

A start that fails (the application goes back to `READY`) fails `wait_until_running` with the reason the service
gives and what to do about it (`include.flink_lifecycle.explain_start_failure`), without retrying: above all a
snapshot of an older job graph (the job's SQL changed since it was taken), which only a start with
`restore=SKIP_RESTORE_FROM_SNAPSHOT` gets past, at the cost of the snapshot's open sessions and a replay from the
stream's initial position.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.amazon.aws.operators.kinesis_analytics import (
    KinesisAnalyticsV2StartApplicationOperator,
    KinesisAnalyticsV2StopApplicationOperator,
)
from airflow.providers.amazon.aws.sensors.kinesis_analytics import (
    KinesisAnalyticsV2StartApplicationCompletedSensor,
    KinesisAnalyticsV2StopApplicationCompletedSensor,
)
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.config import AWS_CONN_ID, settings
from include.dag_params import airflow_params
from include.dag_policy import START_DATE, default_args, tags
from include.flink_lifecycle import LifecycleParams, choose_lifecycle_branch, start_failure_message

APP = settings().flink_app


class WaitUntilRunning(KinesisAnalyticsV2StartApplicationCompletedSensor):
    """The provider's sensor, but a failed start fails with its reason and what to do, not "start failed"."""

    def poke(self, context, **kwargs) -> bool:
        try:
            return super().poke(context, **kwargs)
        except AirflowException as failed:  # the application went back to READY: a retry would not help
            raise AirflowFailException(
                start_failure_message(self.hook.conn, self.application_name)
            ) from failed


with DAG(
    dag_id="clickstream_flink_lifecycle",
    doc_md=__doc__,
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    render_template_as_native_obj=True,
    default_args=default_args(retries=1),
    tags=tags("streaming", 1),
    params=airflow_params(LifecycleParams),
):

    @task.branch
    def choose(params=None) -> str | list[str]:
        """Route by action and current status, so that start on a RUNNING app is a no-op success."""
        return choose_lifecycle_branch(APP, LifecycleParams.from_dict(params).action)

    @task
    def already_in_state(params=None) -> str:
        print(f"{APP} is already in the state that {params['action']!r} asks for; nothing to do.")
        return params["action"]

    start = KinesisAnalyticsV2StartApplicationOperator(
        task_id="start_application",
        aws_conn_id=AWS_CONN_ID,
        application_name=APP,
        run_configuration={
            "ApplicationRestoreConfiguration": {"ApplicationRestoreType": "{{ params.restore }}"},
            "FlinkRunConfiguration": {"AllowNonRestoredState": False},
        },
        wait_for_completion=False,
    )
    wait_running = WaitUntilRunning(
        task_id="wait_until_running",
        aws_conn_id=AWS_CONN_ID,
        application_name=APP,
        mode="reschedule",
        poke_interval=5,
        timeout=timedelta(minutes=15).total_seconds(),
        # Reached either after the start/stop task or directly when the app is already transitioning.
        trigger_rule="none_failed_min_one_success",
    )
    stop = KinesisAnalyticsV2StopApplicationOperator(
        task_id="stop_application",
        aws_conn_id=AWS_CONN_ID,
        application_name=APP,
        force="{{ params.force }}",
        wait_for_completion=False,
    )
    wait_ready = KinesisAnalyticsV2StopApplicationCompletedSensor(
        task_id="wait_until_stopped",
        aws_conn_id=AWS_CONN_ID,
        application_name=APP,
        mode="reschedule",
        poke_interval=5,
        timeout=timedelta(minutes=15).total_seconds(),
        # Reached either after the start/stop task or directly when the app is already transitioning.
        trigger_rule="none_failed_min_one_success",
    )

    choose() >> [start, stop, wait_running, wait_ready, already_in_state()]
    start >> wait_running
    stop >> wait_ready

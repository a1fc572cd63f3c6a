"""
### clickstream_teardown

Deletes, idempotently, everything `clickstream_setup` created in the account behind the `aws_default`
connection: the Managed Flink application (stopped first if it runs), the Firehose delivery stream, the Kinesis
stream, the SNS alert topic with its subscriptions and the SQS inbox, the Glue tables and database, and both
buckets, emptied of every object version first.

* **`confirm`** must be this environment's data lake bucket name (`CLICKSTREAM_BUCKET`); `check_confirmation`
  checks it before anything else, and every deletion checks it again.
* **`keep_data_lake`**: keep the data lake bucket and its data; everything else is deleted.

Each task reports `deleted` or `absent` per resource (a second run reports everything `absent`), and `summary`
prints them all. The deletions are best effort: the Kinesis stream and the buckets are deleted after the
Flink app and the delivery stream that use them even when one of those failed (`all_done`), and `watcher`
fails the run if any deletion failed. Defaults and help of the params: `TeardownParams` in
`include/provision/teardown.py`.
"""

from __future__ import annotations

from airflow.sdk import DAG, TriggerRule, task

from include.dag_params import airflow_params
from include.dag_policy import START_DATE, default_args, tags
from include.provision.teardown import TeardownParams
from include.watcher import watcher

with DAG(
    dag_id="clickstream_teardown",
    doc_md=__doc__,
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(retries=2),
    tags=tags("setup", 1),
    params=airflow_params(TeardownParams),
) as dag:

    @task
    def check_confirmation(params=None) -> dict:
        """Fail at once, naming the expected value, unless `confirm` is this environment's bucket name."""
        from dataclasses import asdict

        from airflow.sdk.exceptions import AirflowFailException

        from include.provision.teardown import confirmed

        try:
            return asdict(confirmed(params))
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc

    @task
    def delete_flink_app(params=None) -> dict[str, str]:
        from include.provision import teardown

        return teardown.delete_flink_app(params)

    @task
    def delete_delivery_stream(params=None) -> dict[str, str]:
        from include.provision import teardown

        return teardown.delete_delivery_stream(params)

    # ALL_DONE: after the readers are gone, or failed to go (best effort). Airflow still skips this when the
    # confirmation, a setup task upstream, failed.
    @task(trigger_rule=TriggerRule.ALL_DONE)
    def delete_stream(params=None) -> dict[str, str]:
        from include.provision import teardown

        return teardown.delete_stream(params)

    @task
    def delete_alerting(params=None) -> dict[str, str]:
        from include.provision import teardown

        return teardown.delete_alerting(params)

    @task
    def delete_catalog(params=None) -> dict[str, str]:
        from include.provision import teardown

        return teardown.delete_catalog(params)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def delete_buckets(params=None) -> dict[str, str]:
        from include.provision import teardown

        return teardown.delete_buckets(params)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def summary(results: list[dict[str, str] | None]) -> dict[str, str]:
        from include.provision.summary import summarize

        return summarize(results, "teardown")

    # An Airflow setup task: when it fails, every task downstream of it, directly or not, is upstream_failed
    # whatever its trigger rule (so the all_done deletions below cannot run unconfirmed). Its direct
    # downstream tasks must be all_success.
    confirmation = check_confirmation().as_setup()
    flink_app = delete_flink_app()
    delivery = delete_delivery_stream()
    alerting = delete_alerting()
    catalog = delete_catalog()
    confirmation >> [flink_app, delivery, alerting, catalog]
    stream = delete_stream()
    buckets = delete_buckets()
    [flink_app, delivery] >> stream
    [flink_app, delivery] >> buckets
    summary([flink_app, delivery, stream, buckets, alerting, catalog])
    # Not wired to the confirmation (a setup task's direct downstream must be all_success); when it fails,
    # the watcher is upstream_failed, which fails the run as well.
    [t for t in dag.tasks if t.task_id != "check_confirmation"] >> watcher()

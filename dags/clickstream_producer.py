"""
### clickstream_producer

The mock web shop: every minute it produces the clickstream events of its data interval and writes them to
the Kinesis Data Stream (in place of the seed's EventBridge + Lambda).

* **Deterministic**: the events of an interval are a pure function of (`seed`, interval), with stable
  `event_id`s, so rerunning an interval re-sends the same events (downstream dedup removes the copies) and
  backfilling a past range replays history: `airflow backfill create --dag-id clickstream_producer
  --from-date … --to-date …`.
* **Params** (validated before anything is sent; defaults, bounds and help come from
  `include/producer/params.py`, the same the code validates with): `users`, `events_per_second` (at most
  0.01 × `users`: a simulated user clicks at most once every 100 s on average), `seed`, and the fault knobs
  `late_fraction` / `late_delay_seconds`, `duplicate_fraction`, `resend_fraction` / `resend_delay_seconds`
  (copies sent again later, e.g. past the stream's dedup horizon), `malformed_fraction`, `malformed_kinds` (all
  off by default). A scheduled run has no conf, so the defaults are what the pipeline produces every minute.
* **Delivery**: PutRecords in batches of ≤ 500 records / 5 MiB, partition key `user_id`, only failed entries
  retried with exponential backoff and jitter, client-side throttled under the per-shard limits. If records
  still fail, the task fails with the counts — nothing is dropped silently.
"""

from __future__ import annotations

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

from include.dag_params import airflow_params
from include.dag_policy import START_DATE, default_args, tags
from include.producer.params import ProducerParams

with DAG(
    dag_id="clickstream_producer",
    doc_md=__doc__,
    schedule=CronDataIntervalTimetable("* * * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=4,
    # A resend of an interval only duplicates event_ids, which compaction and Flink remove: safe to retry.
    default_args=default_args(retries=2),
    tags=tags("ingest", 1),
    params=airflow_params(ProducerParams),
):

    @task
    def validate_params(params: dict | None = None) -> dict:
        """Fail before any side effect when a param is out of range, naming the param and its value.

        The trigger form already enforces each field's bounds; this adds the rules across fields. A bad param
        fails at once: retrying cannot fix it.
        """
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return ProducerParams.from_dict(dict(params or {})).to_dict()
        except ValueError as exc:
            raise AirflowFailException(f"invalid producer params: {exc}") from exc

    @task
    def produce(producer_params: dict, data_interval_start=None, data_interval_end=None) -> dict:
        from include.aws import client
        from include.config import settings
        from include.producer import produce_interval

        report = produce_interval(
            client("kinesis"),
            settings().stream_name,
            ProducerParams.from_dict(producer_params),
            data_interval_start,
            data_interval_end,
        )
        print(
            f"produced [{data_interval_start}, {data_interval_end}): sent {report['sent']}, "
            f"retried {report['retried']}, failed {report['failed']}, by kind {report['by_kind']}"
        )
        return report

    produce(validate_params())

"""What the ``clickstream_teardown`` DAG's tasks do: delete, idempotently, everything ``clickstream_setup``
created in the account behind the ``aws_default`` connection, each resource reported as ``deleted`` or
``absent`` (``kept`` for a data lake bucket the params say to keep), under the keys setup reports.

Every task function checks the ``confirm`` param again before touching anything: the DAG runs the later
deletions even when an earlier one failed (best effort, like a system test's teardown), so no task may rely
on an upstream check alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from include.aws import client
from include.config import Settings, settings
from include.dag_params import check_fields, from_mapping, param
from include.provision.resources import (
    MISSING_BUCKET_CODES,
    MISSING_ENTITY_CODES,
    MISSING_QUEUE_CODES,
    MISSING_RESOURCE_CODES,
    Changes,
    all_subscriptions,
    all_topics,
    catalog_tables,
    if_exists,
)

log = logging.getLogger(__name__)

#: Managed Flink statuses that end by themselves; DeleteApplication and StopApplication wait for them.
FLINK_TRANSITIONAL = {
    "STARTING",
    "UPDATING",
    "STOPPING",
    "FORCE_STOPPING",
    "AUTOSCALING",
    "MAINTENANCE",
    "ROLLING_BACK",
}
#: How long one resource may take to go away (a Managed Flink stop takes minutes on AWS).
TIMEOUT_S = 15 * 60


class TeardownNotConfirmed(ValueError):
    """The ``confirm`` param is not the name of the environment's data lake bucket."""


@dataclass(frozen=True)
class TeardownParams:
    confirm: str = param(
        "",
        "Type the data lake bucket's name (CLICKSTREAM_BUCKET of this environment) to confirm that everything "
        "clickstream_setup created is to be deleted.",
    )
    keep_data_lake: bool = param(
        False,
        "Keep the data lake bucket and its data (raw, compacted, quarantine, streaming); everything else, "
        "the artifacts bucket included, is deleted.",
    )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TeardownParams:
        params = from_mapping(cls, values, "teardown")
        check_fields(params)
        return params


def confirmed(params: Mapping[str, Any] | None) -> TeardownParams:
    """The validated params, or TeardownNotConfirmed unless ``confirm`` names this environment's bucket."""
    values = TeardownParams.from_dict(params)
    bucket = settings().bucket
    if values.confirm != bucket:
        raise TeardownNotConfirmed(
            f"confirm must be this environment's data lake bucket name {bucket!r} to delete its resources, "
            f"got {values.confirm!r}; nothing was deleted"
        )
    return values


# --------------------------------------------------------------------------------------------------- tasks
def delete_flink_app(params: Mapping[str, Any] | None) -> Changes:
    confirmed(params)
    return delete_flink_application(client("kinesisanalyticsv2"), settings().flink_app)


def delete_delivery_stream(params: Mapping[str, Any] | None) -> Changes:
    confirmed(params)
    return delete_firehose_stream(client("firehose"), settings().delivery_stream)


def delete_stream(params: Mapping[str, Any] | None) -> Changes:
    """The Kinesis stream (after the delivery stream and the Flink app that read it)."""
    confirmed(params)
    return delete_kinesis_stream(client("kinesis"), settings().stream_name)


def delete_alerting(params: Mapping[str, Any] | None) -> Changes:
    confirmed(params)
    return delete_alerts(client("sns"), client("sqs"), settings())


def delete_catalog(params: Mapping[str, Any] | None) -> Changes:
    confirmed(params)
    cfg = settings()
    return delete_glue_catalog(client("glue"), cfg.glue_database, [t["Name"] for t in catalog_tables(cfg)])


def delete_buckets(params: Mapping[str, Any] | None) -> Changes:
    """Both buckets, emptied of every object version first (after the writers, Firehose and Flink, are gone)."""
    values, cfg, s3 = confirmed(params), settings(), client("s3")
    changes = empty_and_delete_bucket(s3, cfg.artifacts_bucket)
    if values.keep_data_lake:
        changes[f"s3://{cfg.bucket}"] = "kept"
    else:
        changes.update(empty_and_delete_bucket(s3, cfg.bucket))
    return changes


# --------------------------------------------------------------------------------------------------- Flink
def delete_flink_application(kda: Any, name: str, timeout_s: float = TIMEOUT_S) -> Changes:
    """Stop the application if it runs (forced: its snapshots go with it), then delete it and wait until gone."""
    key = f"kinesisanalyticsv2:{name}"
    detail = _flink_detail(kda, name)
    if detail is None:
        return {key: "absent"}
    deadline = time.monotonic() + timeout_s
    while detail is not None and detail["ApplicationStatus"] in FLINK_TRANSITIONAL:
        detail = _wait_step(deadline, lambda: _flink_detail(kda, name), f"Flink application {name} to settle")
    if detail is None:
        return {key: "deleted"}  # someone else deleted it meanwhile
    if detail["ApplicationStatus"] == "RUNNING":
        log.info("stopping %s (forced) before deleting it", name)
        kda.stop_application(ApplicationName=name, Force=True)
        while detail is not None and detail["ApplicationStatus"] != "READY":
            detail = _wait_step(deadline, lambda: _flink_detail(kda, name), f"Flink application {name} READY")
    if detail is not None and detail["ApplicationStatus"] != "DELETING":
        kda.delete_application(ApplicationName=name, CreateTimestamp=detail["CreateTimestamp"])
    while detail is not None:
        detail = _wait_step(deadline, lambda: _flink_detail(kda, name), f"Flink application {name} deleted")
    return {key: "deleted"}


def _flink_detail(kda: Any, name: str) -> dict[str, Any] | None:
    found = if_exists(lambda: kda.describe_application(ApplicationName=name), MISSING_RESOURCE_CODES)
    return None if found is None else found["ApplicationDetail"]


# --------------------------------------------------------------------------------------------------- Firehose
def delete_firehose_stream(firehose: Any, name: str, timeout_s: float = TIMEOUT_S) -> Changes:
    key = f"firehose:{name}"
    status = _firehose_status(firehose, name)
    if status is None:
        return {key: "absent"}
    if status != "DELETING":
        firehose.delete_delivery_stream(DeliveryStreamName=name)
    deadline = time.monotonic() + timeout_s
    while status is not None:
        status = _wait_step(
            deadline, lambda: _firehose_status(firehose, name), f"delivery stream {name} gone"
        )
    return {key: "deleted"}


def _firehose_status(firehose: Any, name: str) -> str | None:
    found = if_exists(
        lambda: firehose.describe_delivery_stream(DeliveryStreamName=name), MISSING_RESOURCE_CODES
    )
    return None if found is None else found["DeliveryStreamDescription"]["DeliveryStreamStatus"]


# --------------------------------------------------------------------------------------------------- Kinesis
def delete_kinesis_stream(kinesis: Any, name: str, timeout_s: float = TIMEOUT_S) -> Changes:
    """Delete the stream and its enhanced fan-out consumers (none are created, but a reader may add one)."""
    key = f"kinesis:{name}"
    status = _stream_status(kinesis, name)
    if status is None:
        return {key: "absent"}
    deadline = time.monotonic() + timeout_s
    while status in ("CREATING", "UPDATING"):  # DeleteStream is refused in these states
        status = _wait_step(deadline, lambda: _stream_status(kinesis, name), f"Kinesis stream {name} ACTIVE")
    if status not in (None, "DELETING"):
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)
    while status is not None:
        status = _wait_step(deadline, lambda: _stream_status(kinesis, name), f"Kinesis stream {name} gone")
    return {key: "deleted"}


def _stream_status(kinesis: Any, name: str) -> str | None:
    found = if_exists(lambda: kinesis.describe_stream_summary(StreamName=name), MISSING_RESOURCE_CODES)
    return None if found is None else found["StreamDescriptionSummary"]["StreamStatus"]


# --------------------------------------------------------------------------------------------------- SNS / SQS
def delete_alerts(sns: Any, sqs: Any, settings: Settings) -> Changes:
    """Every subscription of the alert topic, the topic, and the SQS inbox (waiting until it is gone).

    On AWS a deleted queue's name can be reused only after 60 seconds: a setup right after a teardown may
    need a retry (the setup DAG retries its tasks).
    """
    changes: Changes = {}
    topic_arn = next(
        (t["TopicArn"] for t in all_topics(sns) if t["TopicArn"].rsplit(":", 1)[-1] == settings.alert_topic),
        None,
    )
    if topic_arn is None:
        changes[f"sns:{settings.alert_topic}"] = "absent"
    else:
        for sub in all_subscriptions(sns, topic_arn):
            # A pending e-mail subscription has no ARN yet; deleting the topic removes it.
            if sub["SubscriptionArn"].startswith("arn:"):
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
            changes[f"sns-subscription:{sub['Protocol']}:{sub['Endpoint']}"] = "deleted"
        sns.delete_topic(TopicArn=topic_arn)
        changes[f"sns:{settings.alert_topic}"] = "deleted"
    queue_url = _queue_url(sqs, settings.alert_queue)
    if queue_url is None:
        changes[f"sqs:{settings.alert_queue}"] = "absent"
    else:
        sqs.delete_queue(QueueUrl=queue_url)
        # AWS takes up to 60 s to delete a queue; until then it is still listed and found.
        deadline = time.monotonic() + TIMEOUT_S
        while queue_url is not None:
            queue_url = _wait_step(
                deadline,
                lambda: _queue_url(sqs, settings.alert_queue),
                f"SQS queue {settings.alert_queue} gone",
            )
        changes[f"sqs:{settings.alert_queue}"] = "deleted"
    return changes


def _queue_url(sqs: Any, name: str) -> str | None:
    found = if_exists(lambda: sqs.get_queue_url(QueueName=name), MISSING_QUEUE_CODES)
    return None if found is None else found["QueueUrl"]


# --------------------------------------------------------------------------------------------------- Glue
def delete_glue_catalog(glue: Any, database: str, expected_tables: list[str]) -> Changes:
    """Every table of the database (setup's and any added since, with their partitions), then the database."""
    if if_exists(lambda: glue.get_database(Name=database), MISSING_ENTITY_CODES) is None:
        return {f"glue:{database}.{t}": "absent" for t in expected_tables} | {f"glue:{database}": "absent"}
    pages = glue.get_paginator("get_tables").paginate(DatabaseName=database)
    tables = [t["Name"] for page in pages for t in page["TableList"]]
    changes: Changes = {f"glue:{database}.{t}": "absent" for t in expected_tables if t not in tables}
    for table in tables:
        glue.delete_table(DatabaseName=database, Name=table)
        changes[f"glue:{database}.{table}"] = "deleted"
    glue.delete_database(Name=database)
    changes[f"glue:{database}"] = "deleted"
    return changes


# --------------------------------------------------------------------------------------------------- S3
def empty_and_delete_bucket(s3: Any, bucket: str) -> Changes:
    """Abort unfinished multipart uploads, delete every object version and delete marker, delete the bucket."""
    key = f"s3://{bucket}"
    if if_exists(lambda: s3.head_bucket(Bucket=bucket), MISSING_BUCKET_CODES) is None:
        return {key: "absent"}
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", ()):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    removed = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        batch = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        # A page holds at most 1,000 entries, the most one DeleteObjects call takes.
        if batch:
            response = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if response.get("Errors"):
                first = response["Errors"][0]
                raise RuntimeError(
                    f"could not delete {len(response['Errors'])} object(s) from s3://{bucket}, e.g. "
                    f"{first.get('Key')} ({first.get('Code')}: {first.get('Message')})"
                )
            removed += len(batch)
    s3.delete_bucket(Bucket=bucket)
    log.info("deleted s3://%s after removing %d object versions", bucket, removed)
    return {key: "deleted"}


def _wait_step(deadline: float, poll: Callable[[], Any], what: str, interval_s: float = 1.0) -> Any:
    """Sleep one interval and poll again; TimeoutError naming ``what`` once the deadline has passed."""
    if time.monotonic() > deadline:
        raise TimeoutError(f"timed out waiting for {what}")
    time.sleep(interval_s)
    return poll()

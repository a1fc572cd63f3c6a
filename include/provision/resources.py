"""Idempotent creation of the pipeline's AWS resources, each from a boto3 client and the settings.

Every ``ensure_*`` function returns ``{resource: "created" | "updated" | "unchanged"}`` so a second run of the
setup DAG can show, and the tests can assert, that it changed nothing. The resource keys (``s3://bucket``,
``kinesis:name``, ...) are the ones :mod:`include.provision.teardown` reports ``deleted`` / ``absent`` for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from include.config import PARTITION_QUERY, Settings

log = logging.getLogger(__name__)

Changes = dict[str, str]

#: Error codes meaning "there is no such bucket / queue" (S3 HeadBucket has no body, hence the bare 404).
MISSING_BUCKET_CODES = ("404", "NoSuchBucket", "NotFound")
MISSING_QUEUE_CODES = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
MISSING_RESOURCE_CODES = ("ResourceNotFoundException",)  # Kinesis, Firehose, Managed Flink
MISSING_ENTITY_CODES = ("EntityNotFoundException",)  # Glue

T = TypeVar("T")


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def if_exists(fetch: Callable[[], T], missing_codes: tuple[str, ...]) -> T | None:
    """``fetch()``'s answer, or None when AWS answers that the resource is not there (one of ``missing_codes``).

    Every ``ensure_*`` first asks whether its resource exists; any other error (throttling, access denied)
    propagates, so a resource that cannot be read is never created twice.
    """
    try:
        return fetch()
    except ClientError as exc:
        if error_code(exc) not in missing_codes:
            raise
        return None


# --------------------------------------------------------------------------------------------------- S3
def ensure_bucket(s3: Any, bucket: str, region: str) -> Changes:
    if if_exists(lambda: s3.head_bucket(Bucket=bucket), MISSING_BUCKET_CODES) is not None:
        return {f"s3://{bucket}": "unchanged"}
    kwargs: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    return {f"s3://{bucket}": "created"}


# --------------------------------------------------------------------------------------------------- Kinesis
def ensure_stream(kinesis: Any, settings: Settings, timeout_s: float = 120) -> tuple[Changes, str]:
    """Create the Kinesis stream (provisioned, ``shard_count`` shards) and wait for ACTIVE; returns its ARN."""
    name = settings.stream_name
    found = if_exists(lambda: kinesis.describe_stream_summary(StreamName=name), MISSING_RESOURCE_CODES)
    summary = None if found is None else found["StreamDescriptionSummary"]
    change = "created" if summary is None else "unchanged"
    if summary is None:
        kinesis.create_stream(
            StreamName=name, ShardCount=settings.shard_count, StreamModeDetails={"StreamMode": "PROVISIONED"}
        )
    deadline = time.monotonic() + timeout_s
    while summary is None or summary["StreamStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise TimeoutError(f"Kinesis stream {name} not ACTIVE after {timeout_s}s")
        time.sleep(0.5 if summary is None else 1)
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    if change == "unchanged" and summary["OpenShardCount"] != settings.shard_count:
        log.warning(
            "Kinesis stream %s has %s open shards, settings ask for %s; resharding is left to the operator "
            "(UpdateShardCount) because it changes partition-to-shard mapping under a running app.",
            name,
            summary["OpenShardCount"],
            settings.shard_count,
        )
    return {f"kinesis:{name}": change}, summary["StreamARN"]


def stream_arn(kinesis: Any, name: str) -> str:
    return kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]


# --------------------------------------------------------------------------------------------------- Firehose
def delivery_destination(settings: Settings) -> dict[str, Any]:
    """ExtendedS3DestinationConfiguration: GZIP JSON lines, dynamic partitioning by event hour, error prefix."""
    return {
        "RoleARN": settings.firehose_role_arn,
        "BucketARN": f"arn:aws:s3:::{settings.bucket}",
        "Prefix": settings.firehose_prefix,
        "ErrorOutputPrefix": settings.firehose_error_prefix,
        "BufferingHints": {
            "SizeInMBs": settings.firehose_buffer_mb,
            "IntervalInSeconds": settings.firehose_buffer_seconds,
        },
        "CompressionFormat": "GZIP",
        "DynamicPartitioningConfiguration": {"Enabled": True, "RetryOptions": {"DurationInSeconds": 300}},
        "ProcessingConfiguration": {
            "Enabled": True,
            "Processors": [
                {
                    "Type": "MetadataExtraction",
                    "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": PARTITION_QUERY},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                    ],
                },
                # Default delimiter: a newline after every record (JSON lines).
                {"Type": "AppendDelimiterToRecord", "Parameters": []},
            ],
        },
    }


def _destination_matches(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    for key, value in wanted.items():
        if key == "RoleARN":
            continue
        have = current.get(key)
        if key == "ProcessingConfiguration":
            have = json.loads(json.dumps(have, sort_keys=True)) if have else None
            value = json.loads(json.dumps(value, sort_keys=True))
        if have != value:
            return False
    return True


def ensure_delivery_stream(
    firehose: Any, settings: Settings, stream_arn: str, timeout_s: float = 120
) -> Changes:
    name = settings.delivery_stream
    wanted = delivery_destination(settings)
    found = if_exists(
        lambda: firehose.describe_delivery_stream(DeliveryStreamName=name), MISSING_RESOURCE_CODES
    )
    if found is None:
        firehose.create_delivery_stream(
            DeliveryStreamName=name,
            DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={
                "KinesisStreamARN": stream_arn,
                "RoleARN": settings.firehose_role_arn,
            },
            ExtendedS3DestinationConfiguration=wanted,
        )
        _wait_delivery_stream_active(firehose, name, timeout_s)
        return {f"firehose:{name}": "created"}
    description = found["DeliveryStreamDescription"]
    destination = description["Destinations"][0]
    current = destination.get("ExtendedS3DestinationDescription", {})
    if _destination_matches(current, wanted):
        return {f"firehose:{name}": "unchanged"}
    firehose.update_destination(
        DeliveryStreamName=name,
        CurrentDeliveryStreamVersionId=description["VersionId"],
        DestinationId=destination["DestinationId"],
        ExtendedS3DestinationUpdate=wanted,
    )
    _wait_delivery_stream_active(firehose, name, timeout_s)
    return {f"firehose:{name}": "updated"}


def _wait_delivery_stream_active(firehose: Any, name: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        status = firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
            "DeliveryStreamStatus"
        ]
        if status == "ACTIVE":
            return
        if status.endswith("FAILED"):
            raise RuntimeError(f"Firehose delivery stream {name} is {status}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Firehose delivery stream {name} not ACTIVE after {timeout_s}s (is {status})")
        time.sleep(1)


# --------------------------------------------------------------------------------------------------- SNS / SQS
def ensure_alerts(sns: Any, sqs: Any, settings: Settings) -> tuple[Changes, str]:
    """The alert topic, its e-mail subscriptions, and an SQS inbox subscribed to it; returns the topic ARN."""
    changes: Changes = {}
    existing = {t["TopicArn"].rsplit(":", 1)[-1]: t["TopicArn"] for t in all_topics(sns)}
    topic_arn = existing.get(settings.alert_topic)
    if topic_arn is None:
        topic_arn = sns.create_topic(Name=settings.alert_topic)["TopicArn"]
        changes[f"sns:{settings.alert_topic}"] = "created"
    else:
        changes[f"sns:{settings.alert_topic}"] = "unchanged"

    subscribed = {
        (s["Protocol"], s["Endpoint"]) for s in all_subscriptions(sns, topic_arn) if s.get("Endpoint")
    }
    queue = if_exists(lambda: sqs.get_queue_url(QueueName=settings.alert_queue), MISSING_QUEUE_CODES)
    changes[f"sqs:{settings.alert_queue}"] = "created" if queue is None else "unchanged"
    if queue is None:
        queue = sqs.create_queue(QueueName=settings.alert_queue)
    queue_url = queue["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        },
        sort_keys=True,
    )
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["Policy"]).get("Attributes", {})
    if attrs.get("Policy") != policy:
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": policy})
        if changes[f"sqs:{settings.alert_queue}"] == "unchanged":
            changes[f"sqs:{settings.alert_queue}"] = "updated"

    wanted = [("sqs", queue_arn)] + [
        ("email", e.strip()) for e in settings.alert_emails.split(",") if e.strip()
    ]
    for protocol, endpoint in wanted:
        key = f"sns-subscription:{protocol}:{endpoint}"
        if (protocol, endpoint) in subscribed:
            changes[key] = "unchanged"
            continue
        attributes = {"RawMessageDelivery": "true"} if protocol == "sqs" else {}
        sns.subscribe(TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint, Attributes=attributes)
        changes[key] = "created"
    return changes, topic_arn


def all_topics(sns: Any) -> list[dict[str, Any]]:
    return [t for page in sns.get_paginator("list_topics").paginate() for t in page["Topics"]]


def all_subscriptions(sns: Any, topic_arn: str) -> list[dict[str, Any]]:
    paginator = sns.get_paginator("list_subscriptions_by_topic")
    return [s for page in paginator.paginate(TopicArn=topic_arn) for s in page["Subscriptions"]]


# --------------------------------------------------------------------------------------------------- Glue
def ensure_glue_database(glue: Any, database: str) -> Changes:
    if if_exists(lambda: glue.get_database(Name=database), MISSING_ENTITY_CODES) is not None:
        return {f"glue:{database}": "unchanged"}
    glue.create_database(DatabaseInput={"Name": database, "Description": "Clickstream sessions data lake"})
    return {f"glue:{database}": "created"}


def _comparable(table: dict[str, Any]) -> dict[str, Any]:
    keep = ("TableType", "Parameters", "PartitionKeys", "StorageDescriptor", "Description")
    out = {k: table.get(k) for k in keep}
    sd = dict(out["StorageDescriptor"] or {})
    out["StorageDescriptor"] = {
        k: sd.get(k) for k in ("Columns", "Location", "InputFormat", "OutputFormat", "SerdeInfo")
    }
    return json.loads(json.dumps(out, sort_keys=True, default=str))


def ensure_glue_table(glue: Any, database: str, table_input: dict[str, Any]) -> Changes:
    name = table_input["Name"]
    key = f"glue:{database}.{name}"
    found = if_exists(lambda: glue.get_table(DatabaseName=database, Name=name), MISSING_ENTITY_CODES)
    if found is None:
        glue.create_table(DatabaseName=database, TableInput=table_input)
        return {key: "created"}
    if _comparable(found["Table"]) == _comparable(table_input):
        return {key: "unchanged"}
    glue.update_table(DatabaseName=database, TableInput=table_input)
    return {key: "updated"}


def catalog_tables(settings: Settings) -> list[dict[str, Any]]:
    """Every Glue table the setup DAG maintains: raw (projected), compacted and quarantine events, the
    reconciled sessions and the streamed ones (projected)."""
    from include.compaction.catalog import (
        compacted_events_table_input,
        quarantine_table_input,
        raw_events_table_input,
    )
    from include.reconciliation.catalog import sessions_table_input, stream_sessions_table_input

    return [
        raw_events_table_input(settings.bucket, settings.raw_prefix),
        compacted_events_table_input(settings.bucket, settings.compacted_prefix),
        quarantine_table_input(settings.bucket, settings.quarantine_prefix),
        sessions_table_input(settings.bucket, settings.batch_sessions_prefix),
        stream_sessions_table_input(settings.bucket, settings.streaming_prefix),
    ]


# --------------------------------------------------------------------------------------------------- Flink
def flink_property_groups(
    settings: Settings, stream_arn: str, region: str, run_options: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The application's property groups (keys defined by include.flink_app.flink_job); ``run_options`` is
    what include.flink_app.package.build reported for the uploaded zip (entry point and connector jar)."""
    from include.flink_app.flink_job import GROUP_CONSUMER, GROUP_SINK

    return [
        {
            "PropertyGroupId": "kinesis.analytics.flink.run.options",
            "PropertyMap": dict(run_options or {"python": "main.py"}),
        },
        {
            "PropertyGroupId": GROUP_CONSUMER,
            "PropertyMap": {
                "connector": "kinesis",
                "stream.arn": stream_arn,
                "aws.region": region,
                "source.init.position": settings.flink_source_init_position,
            },
        },
        {
            "PropertyGroupId": GROUP_SINK,
            "PropertyMap": {
                "output.path": f"s3://{settings.bucket}/{settings.streaming_prefix.rstrip('/')}",
                "rollover.interval": settings.flink_rollover,
            },
        },
    ]


def flink_application_configuration(
    settings: Settings, stream_arn: str, region: str, run_options: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "ApplicationCodeConfiguration": {
            "CodeContent": {
                "S3ContentLocation": {
                    "BucketARN": f"arn:aws:s3:::{settings.artifacts_bucket}",
                    "FileKey": settings.flink_code_key,
                }
            },
            "CodeContentType": "ZIPFILE",
        },
        "EnvironmentProperties": {
            "PropertyGroups": flink_property_groups(settings, stream_arn, region, run_options)
        },
        "FlinkApplicationConfiguration": {
            # Each checkpoint commits the sink files exactly once (every minute by default).
            "CheckpointConfiguration": {
                "ConfigurationType": "CUSTOM",
                "CheckpointingEnabled": True,
                "CheckpointInterval": settings.flink_checkpoint_ms,
                "MinPauseBetweenCheckpoints": min(5_000, settings.flink_checkpoint_ms),
            },
            # Lateness is only deterministic with one source reader per partition order; scale by KPUs later.
            "ParallelismConfiguration": {
                "ConfigurationType": "CUSTOM",
                "Parallelism": 1,
                "ParallelismPerKPU": 1,
                "AutoScalingEnabled": False,
            },
        },
        "ApplicationSnapshotConfiguration": {"SnapshotsEnabled": True},
    }


def _property_map(groups: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {g["PropertyGroupId"]: dict(g["PropertyMap"]) for g in groups}


def ensure_flink_application(
    kda: Any,
    settings: Settings,
    stream_arn: str,
    code_etag: str | None = None,
    run_options: dict[str, str] | None = None,
) -> Changes:
    """CreateApplication, or UpdateApplication when the properties or the code object changed."""
    name = settings.flink_app
    region = kda.meta.region_name
    wanted = flink_application_configuration(settings, stream_arn, region, run_options)
    key = f"kinesisanalyticsv2:{name}"
    found = if_exists(lambda: kda.describe_application(ApplicationName=name), MISSING_RESOURCE_CODES)
    if found is None:
        kda.create_application(
            ApplicationName=name,
            ApplicationDescription="Clickstream sessions (Flink SQL): 60 s gap sessions and per-minute metrics",
            RuntimeEnvironment="FLINK-2_3",
            ServiceExecutionRole=settings.flink_role_arn,
            ApplicationConfiguration=wanted,
            Tags=[{"Key": "project", "Value": "clickstream"}, {"Key": "code-etag", "Value": code_etag or ""}],
        )
        return {key: "created"}
    detail = found["ApplicationDetail"]
    config = detail.get("ApplicationConfigurationDescription", {})
    have_groups = _property_map(
        config.get("EnvironmentPropertyDescriptions", {}).get("PropertyGroupDescriptions", [])
    )
    have_code = (
        config.get("ApplicationCodeConfigurationDescription", {})
        .get("CodeContentDescription", {})
        .get("S3ApplicationCodeLocationDescription", {})
    )
    tags = {
        t["Key"]: t["Value"]
        for t in kda.list_tags_for_resource(ResourceARN=detail["ApplicationARN"]).get("Tags", [])
    }
    same_code = (
        have_code.get("BucketARN") == f"arn:aws:s3:::{settings.artifacts_bucket}"
        and have_code.get("FileKey") == settings.flink_code_key
        and tags.get("code-etag", "") == (code_etag or "")
    )
    have_checkpoint = (
        config.get("FlinkApplicationConfigurationDescription", {})
        .get("CheckpointConfigurationDescription", {})
        .get("CheckpointInterval")
    )
    want_checkpoint = wanted["FlinkApplicationConfiguration"]["CheckpointConfiguration"]
    if (
        have_groups == _property_map(wanted["EnvironmentProperties"]["PropertyGroups"])
        and same_code
        and have_checkpoint == want_checkpoint["CheckpointInterval"]
    ):
        return {key: "unchanged"}
    kda.update_application(
        ApplicationName=name,
        CurrentApplicationVersionId=detail["ApplicationVersionId"],
        ApplicationConfigurationUpdate={
            "ApplicationCodeConfigurationUpdate": {
                "CodeContentTypeUpdate": "ZIPFILE",
                "CodeContentUpdate": {
                    "S3ContentLocationUpdate": {
                        "BucketARNUpdate": f"arn:aws:s3:::{settings.artifacts_bucket}",
                        "FileKeyUpdate": settings.flink_code_key,
                    }
                },
            },
            "EnvironmentPropertyUpdates": {
                "PropertyGroups": wanted["EnvironmentProperties"]["PropertyGroups"]
            },
            "FlinkApplicationConfigurationUpdate": {
                "CheckpointConfigurationUpdate": {
                    "ConfigurationTypeUpdate": "CUSTOM",
                    "CheckpointingEnabledUpdate": True,
                    "CheckpointIntervalUpdate": want_checkpoint["CheckpointInterval"],
                    "MinPauseBetweenCheckpointsUpdate": want_checkpoint["MinPauseBetweenCheckpoints"],
                }
            },
        },
    )
    kda.tag_resource(
        ResourceARN=detail["ApplicationARN"], Tags=[{"Key": "code-etag", "Value": code_etag or ""}]
    )
    return {key: "updated"}

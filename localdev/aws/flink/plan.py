"""What a run of an application needs, derived once from its configuration and checked as AWS checks at start.

A start that cannot run (missing code object, stream or bucket, invalid properties) fails with a
:class:`LaunchError` whose message is the failure reason users see. The plan rewrites the property groups for
the local run: ``consumer.config.0`` reads the spool with the filesystem connector, ``sink.config.0`` writes a
local directory that the uploader copies to S3.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localdev.aws.firehose.streams import parse_arn
from localdev.aws.flink.bridge import parse_start
from localdev.aws.flink.descriptions import bucket_of
from localdev.aws.flink.uploader import parse_s3_url

GROUP_CONSUMER = "consumer.config.0"
GROUP_SINK = "sink.config.0"
#: Groups Managed Flink reads itself; not passed to the job.
AWS_ONLY_GROUPS = ("kinesis.analytics.flink.run.options",)
#: How often the local source lists the spool directory.
MONITOR_INTERVAL = "500 ms"
MONITOR_INTERVAL_S = 0.5


class LaunchError(Exception):
    """The application cannot run as configured; the message is the failure reason users see."""


@dataclass
class Plan:
    """What a run needs, derived once from the application's configuration."""

    groups: dict[str, dict[str, str]]
    stream_arn: str
    start: tuple[str, float]
    bucket: str
    prefix: str
    checkpoint_interval_ms: int


def groups_of(app: dict) -> dict[str, dict[str, str]]:
    """The application's property groups as ``{group id: {key: value}}``."""
    descs = app["config"]["EnvironmentPropertyDescriptions"]["PropertyGroupDescriptions"]
    return {g["PropertyGroupId"]: dict(g["PropertyMap"]) for g in descs}


def checkpoint_interval_ms(app: dict) -> int:
    """The job's checkpoint interval; sinks commit files on checkpoints, so output appears at this pace."""
    checkpoint = app["config"]["FlinkApplicationConfigurationDescription"][
        "CheckpointConfigurationDescription"
    ]
    return int(checkpoint["CheckpointInterval"])


def describe_error(exc: BaseException) -> str:
    """A boto error as ``Code: Message`` for a failure reason."""
    if isinstance(exc, ClientError):
        return f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}"
    if isinstance(exc, BotoCoreError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def make_plan(app: dict, client: Callable[..., Any], source_dir: Path, output_dir: Path) -> Plan:
    """Check the application as AWS does at start time, and plan its local run; LaunchError says what is wrong.

    ``client(service, region)`` reaches moto; the job will read ``source_dir`` (the spool) and write
    ``output_dir``.
    """
    groups = groups_of(app)
    consumer = groups.get(GROUP_CONSUMER)
    sink = groups.get(GROUP_SINK)
    if consumer is None:
        raise LaunchError(f"property group {GROUP_CONSUMER!r} is missing: the job has no source")
    if sink is None:
        raise LaunchError(f"property group {GROUP_SINK!r} is missing: the job has no sink")
    check_code(app, client)
    local = {gid: dict(props) for gid, props in groups.items() if gid not in AWS_ONLY_GROUPS}
    connector = consumer.get("connector", "kinesis").strip()
    if connector != "kinesis":
        raise LaunchError(
            f"{GROUP_CONSUMER} connector {connector!r} is not supported locally: the local Managed Flink reads "
            "a Kinesis stream (connector 'kinesis' with stream.arn) through the companion"
        )
    stream_arn = consumer.get("stream.arn", "").strip()
    if not stream_arn:
        raise LaunchError(f"{GROUP_CONSUMER} needs 'stream.arn' (got {consumer!r})")
    try:
        region = parse_arn(stream_arn, "kinesis", "stream")[0]
    except Exception as exc:
        raise LaunchError(f"{GROUP_CONSUMER} stream.arn: {getattr(exc, 'message', exc)}") from None
    try:
        client("kinesis", region).describe_stream_summary(StreamARN=stream_arn)
    except ClientError as exc:
        raise LaunchError(f"{GROUP_CONSUMER} stream.arn {stream_arn}: {describe_error(exc)}") from None
    try:
        start = parse_start(consumer, 0.0)
    except ValueError as exc:
        raise LaunchError(str(exc)) from None
    output = sink.get("output.path", "").strip()
    try:
        bucket, prefix = parse_s3_url(output)
    except ValueError as exc:
        raise LaunchError(
            f"{exc} (the local run writes a local directory that the companion uploads to S3)"
        ) from None
    try:
        client("s3", app["region"]).head_bucket(Bucket=bucket)
    except ClientError as exc:
        raise LaunchError(
            f"{GROUP_SINK} output.path {output}: bucket {bucket!r} is not reachable: {describe_error(exc)}"
        ) from None
    # The same groups with local connectors: the job reads the spool and writes the output directory.
    local[GROUP_CONSUMER] = {
        "connector": "filesystem",
        "path": str(source_dir),
        "source.monitor-interval": MONITOR_INTERVAL,
    }
    local[GROUP_SINK] = {**sink, "output.path": str(output_dir)}
    try:
        from include.flink_app.flink_job import JobConfigError, job_from_properties
    except ImportError as exc:
        raise LaunchError(f"the sessions job cannot be built: {exc}") from None
    try:
        job_from_properties(local)
    except (JobConfigError, ValueError) as exc:
        raise LaunchError(f"invalid application properties: {exc}") from None
    return Plan(local, stream_arn, start, bucket, prefix, checkpoint_interval_ms(app))


def check_code(app: dict, client: Callable[..., Any]) -> None:
    """The application's code zip in S3 must be readable (its content is not used: the job is the repository's)."""
    desc = app["config"]["ApplicationCodeConfigurationDescription"]["CodeContentDescription"]
    location = desc.get("S3ApplicationCodeLocationDescription")
    if not location:
        return  # inline zip: nothing to fetch
    bucket = bucket_of(location["BucketARN"], "S3ContentLocation.BucketARN")
    kwargs = {"Bucket": bucket, "Key": location["FileKey"]}
    if location.get("ObjectVersion"):
        kwargs["VersionId"] = location["ObjectVersion"]
    try:
        client("s3", app["region"]).head_object(**kwargs)
    except ClientError as exc:
        raise LaunchError(
            f"application code s3://{bucket}/{location['FileKey']} cannot be read: {describe_error(exc)}"
        ) from None

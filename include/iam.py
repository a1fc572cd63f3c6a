"""Least-privilege IAM policies for the pipeline's three roles, built from the Settings that name the resources.

    python -m include.iam --role airflow|firehose|flink [--trust] [--no-teardown]
                          [--account 123456789012] [--region eu-west-1]

prints one JSON policy document: the role's permissions, or with ``--trust`` its trust policy. The names come
from :class:`include.config.Settings` (so the ``CLICKSTREAM_*`` environment variables of the deployment must be
set when this runs); the account defaults to the one in ``CLICKSTREAM_FIREHOSE_ROLE_ARN`` /
``CLICKSTREAM_FLINK_ROLE_ARN``, the region to ``AWS_REGION`` / ``AWS_DEFAULT_REGION``.

* ``airflow``: what the DAGs, their callbacks and the amazon provider operators they use call (setup,
  producer, compaction, Flink lifecycle and watchdog, alerts, teardown). Not what MWAA itself needs for its
  own logs, metrics, Celery queue and DAG bucket: attach AWS's documented MWAA execution-role policy for that.
  ``--no-teardown`` leaves out what only ``clickstream_teardown`` needs (deleting buckets, streams, …).
* ``firehose``: read the Kinesis stream, write the raw prefixes of the lake, log delivery errors.
* ``flink``: read the application zip and the Kinesis stream, write the ``streaming/`` sinks, log.

``tests/test_iam.py`` checks that every AWS action the code calls is allowed and that nothing is broader.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, fields
from typing import Any

from include.config import Settings, settings

ROLES = ("airflow", "firehose", "flink")

#: Actions for which AWS supports no resource-level permission, so ``"Resource": "*"`` is the only choice.
RESOURCE_WILDCARD_ACTIONS = {
    "sns:ListTopics": "lists every topic of the account and region; SNS has no resource type for it. "
    "Setup uses it to find the alert topic's ARN by name.",
}

#: Actions the code calls that need no permission at all (AWS evaluates no policy for them).
PERMISSION_FREE_ACTIONS = {
    "sts:GetCallerIdentity": "AWS documents that no permission is required and that it cannot be denied; "
    "the alert callback uses it to build the topic ARN.",
}

#: Layout prefixes written by the delivery services; every other ``*_prefix`` of Settings is Airflow's.
SERVICE_PREFIXES = {"raw_prefix": "firehose", "raw_error_prefix": "firehose", "streaming_prefix": "flink"}

#: The log group names the two services use by convention (the console creates them with these names).
FIREHOSE_LOG_GROUP = "/aws/kinesisfirehose/{name}"
FLINK_LOG_GROUP = "/aws/kinesis-analytics/{name}"
FLINK_LOG_STREAM = "kinesis-analytics-log-stream"


class IamConfigError(ValueError):
    """Account, region or settings do not fit together; the message names the value and where it came from."""


@dataclass(frozen=True)
class Target:
    """Where the resources live: ARN partition, account and region."""

    partition: str
    account: str
    region: str

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account if account else ''}:{resource}"
        )


def _role_account(arn: str, variable: str) -> tuple[str, str]:
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise IamConfigError(
            f"{variable} must be an IAM role ARN (arn:aws:iam::<account>:role/<name>), got {arn!r}"
        )
    return parts[1], parts[4]


def target_for(
    cfg: Settings, account: str | None = None, region: str | None = None, environ: dict | None = None
) -> Target:
    """The target from the arguments, the role ARNs of ``cfg`` and the environment; refuses a mismatch."""
    environ = os.environ if environ is None else environ
    roles = {
        "CLICKSTREAM_FIREHOSE_ROLE_ARN": _role_account(
            cfg.firehose_role_arn, "CLICKSTREAM_FIREHOSE_ROLE_ARN"
        ),
        "CLICKSTREAM_FLINK_ROLE_ARN": _role_account(cfg.flink_role_arn, "CLICKSTREAM_FLINK_ROLE_ARN"),
    }
    partitions = {partition for partition, _ in roles.values()}
    if len(partitions) != 1:
        raise IamConfigError(f"the role ARNs are in different partitions: {sorted(partitions)}")
    account = account or next(iter(roles.values()))[1]
    if not (account.isdigit() and len(account) == 12):
        raise IamConfigError(f"account must be a 12-digit AWS account id, got {account!r}")
    for variable, (_, role_account) in roles.items():
        if role_account != account:
            raise IamConfigError(
                f"{variable} names a role in account {role_account}, but the policies are for account {account}; "
                f"set {variable} to the role created in {account}"
            )
    region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise IamConfigError("no region: pass --region or set AWS_REGION / AWS_DEFAULT_REGION")
    return Target(partitions.pop(), account, region)


# ------------------------------------------------------------------------------------------------ resources
class Resources:
    """The ARN of every resource the policies name, from Settings and the target."""

    def __init__(self, cfg: Settings, target: Target) -> None:
        self.cfg, self.t = cfg, target

    def bucket(self, name: str) -> str:
        return self.t.arn("s3", name, region=False, account=False)

    def objects(self, bucket: str, prefix: str = "") -> str:
        return f"{self.bucket(bucket)}/{prefix}*"

    @property
    def stream(self) -> str:
        return self.t.arn("kinesis", f"stream/{self.cfg.stream_name}")

    @property
    def delivery_stream(self) -> str:
        return self.t.arn("firehose", f"deliverystream/{self.cfg.delivery_stream}")

    @property
    def application(self) -> str:
        return self.t.arn("kinesisanalytics", f"application/{self.cfg.flink_app}")

    @property
    def topic(self) -> str:
        return self.t.arn("sns", self.cfg.alert_topic)

    @property
    def queue(self) -> str:
        return self.t.arn("sqs", self.cfg.alert_queue)

    @property
    def glue_catalog(self) -> str:
        return self.t.arn("glue", "catalog")

    @property
    def glue_database(self) -> str:
        return self.t.arn("glue", f"database/{self.cfg.glue_database}")

    def glue_tables(self, names: list[str] | None = None) -> list[str]:
        """The named tables, or every table of the database (teardown deletes tables added since setup)."""
        if names is None:
            return [self.t.arn("glue", f"table/{self.cfg.glue_database}/*")]
        return [self.t.arn("glue", f"table/{self.cfg.glue_database}/{n}") for n in names]

    def log_group(self, name: str) -> str:
        return self.t.arn("logs", f"log-group:{name}")


def lake_areas(cfg: Settings) -> dict[str, str]:
    """Top-level area of the lake bucket (``compacted/``) → its owner (airflow, firehose or flink).

    The areas come from every ``*_prefix`` field of Settings, so a new layout prefix is covered without a
    change here. An area claimed by two owners is refused: nobody could be given it alone.
    """
    owners: dict[str, tuple[str, str]] = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if not f.name.endswith("_prefix") or not isinstance(value, str):
            continue
        area = value.strip("/").split("/", 1)[0]
        if not area:
            raise IamConfigError(
                f"Settings.{f.name} is {value!r}: every layout prefix needs a top-level folder"
            )
        owner = SERVICE_PREFIXES.get(f.name, "airflow")
        if area in owners and owners[area][0] != owner:
            raise IamConfigError(
                f"Settings.{f.name} ({value!r}) puts {owner}'s output into {area}/, which "
                f"Settings.{owners[area][1]} gives to {owners[area][0]}"
            )
        owners[area] = (owner, f.name)
    return {f"{area}/": owner for area, (owner, _) in sorted(owners.items())}


def managed_tables(cfg: Settings) -> list[str]:
    from include.provision import catalog_tables

    return sorted(t["Name"] for t in catalog_tables(cfg))


def _statement(
    sid: str, actions: list[str], resources: list[str] | str, condition: dict | None = None
) -> dict:
    statement: dict[str, Any] = {
        "Sid": sid,
        "Effect": "Allow",
        "Action": sorted(actions),
        "Resource": resources,
    }
    if condition:
        statement["Condition"] = condition
    return statement


def _policy(statements: list[dict]) -> dict:
    return {"Version": "2012-10-17", "Statement": statements}


# ------------------------------------------------------------------------------------------------ policies
def airflow_policy(cfg: Settings, target: Target, *, teardown: bool = True) -> dict:
    """The Airflow execution role: what the DAGs and the provider operators they use call."""
    r = Resources(cfg, target)
    areas = lake_areas(cfg)
    buckets = [r.bucket(cfg.bucket), r.bucket(cfg.artifacts_bucket)]
    read_areas = [r.objects(cfg.bucket, area) for area in areas]
    own_areas = [r.objects(cfg.bucket, area) for area, owner in areas.items() if owner == "airflow"]
    tables = r.glue_tables(managed_tables(cfg))
    statements = [
        # setup creates both buckets; HeadBucket and ListObjectsV2 are authorised as s3:ListBucket
        _statement(
            "S3Buckets", ["s3:CreateBucket", "s3:ListBucket", "s3:PutBucketPublicAccessBlock"], buckets
        ),
        _statement("S3LakeRead", ["s3:GetObject"], read_areas),
        # compaction (incl. its _staging/ under compacted/), manifests, batch sessions, reports
        _statement("S3LakeWrite", ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:PutObject"], own_areas),
        _statement(
            "S3FlinkCode", ["s3:PutObject"], [f"{r.bucket(cfg.artifacts_bucket)}/{cfg.flink_code_key}"]
        ),
        _statement(
            "KinesisStream",
            ["kinesis:CreateStream", "kinesis:DescribeStreamSummary", "kinesis:PutRecords"],
            [r.stream],
        ),
        _statement(
            "FirehoseDeliveryStream",
            [
                "firehose:CreateDeliveryStream",
                "firehose:DescribeDeliveryStream",
                "firehose:UpdateDestination",
            ],
            [r.delivery_stream],
        ),
        _statement(
            "FlinkApplication",
            [
                "kinesisanalytics:CreateApplication",
                "kinesisanalytics:DescribeApplication",
                "kinesisanalytics:DescribeApplicationOperation",
                "kinesisanalytics:ListApplicationOperations",
                "kinesisanalytics:ListApplicationSnapshots",
                "kinesisanalytics:ListTagsForResource",
                "kinesisanalytics:StartApplication",
                "kinesisanalytics:StopApplication",
                "kinesisanalytics:TagResource",
                "kinesisanalytics:UpdateApplication",
            ],
            [r.application],
        ),
        _statement(
            "SnsAlertTopic",
            ["sns:CreateTopic", "sns:ListSubscriptionsByTopic", "sns:Publish", "sns:Subscribe"],
            [r.topic],
        ),
        _statement("SnsFindTopic", ["sns:ListTopics"], "*"),
        _statement(
            "SqsAlertInbox",
            ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SetQueueAttributes"],
            [r.queue],
        ),
        _statement(
            "GlueDatabase", ["glue:CreateDatabase", "glue:GetDatabase"], [r.glue_catalog, r.glue_database]
        ),
        _statement(
            "GlueTables",
            [
                "glue:CreatePartition",
                "glue:CreateTable",
                "glue:GetPartition",
                "glue:GetTable",
                "glue:UpdatePartition",
                "glue:UpdateTable",
            ],
            [r.glue_catalog, r.glue_database, *tables],
        ),
        _statement(
            "PassFirehoseRole",
            ["iam:PassRole"],
            [cfg.firehose_role_arn],
            {"StringEquals": {"iam:PassedToService": "firehose.amazonaws.com"}},
        ),
        _statement(
            "PassFlinkRole",
            ["iam:PassRole"],
            [cfg.flink_role_arn],
            {"StringEquals": {"iam:PassedToService": "kinesisanalytics.amazonaws.com"}},
        ),
    ]
    if teardown:
        statements += [
            _statement(
                "TeardownS3Buckets",
                ["s3:DeleteBucket", "s3:ListBucketMultipartUploads", "s3:ListBucketVersions"],
                buckets,
            ),
            # emptying a bucket deletes every version of every object, the services' areas included
            _statement(
                "TeardownS3Objects",
                ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                [f"{b}/*" for b in buckets],
            ),
            _statement("TeardownKinesisStream", ["kinesis:DeleteStream"], [r.stream]),
            _statement("TeardownFirehose", ["firehose:DeleteDeliveryStream"], [r.delivery_stream]),
            _statement("TeardownFlinkApplication", ["kinesisanalytics:DeleteApplication"], [r.application]),
            _statement("TeardownSnsTopic", ["sns:DeleteTopic", "sns:Unsubscribe"], [r.topic]),
            _statement("TeardownSqsInbox", ["sqs:DeleteQueue"], [r.queue]),
            # GetTables/DeleteTable: every table of the database, also those added after setup;
            # DeleteDatabase is authorised on the database's tables and functions too
            _statement(
                "TeardownGlueCatalog",
                ["glue:DeleteDatabase", "glue:DeleteTable", "glue:GetTables"],
                [
                    r.glue_catalog,
                    r.glue_database,
                    *r.glue_tables(),
                    target.arn("glue", f"userDefinedFunction/{cfg.glue_database}/*"),
                ],
            ),
        ]
    return _policy(statements)


def firehose_policy(cfg: Settings, target: Target) -> dict:
    """The Firehose delivery role: Kinesis stream as source, the lake's raw prefixes as destination."""
    r = Resources(cfg, target)
    raw = [r.objects(cfg.bucket, cfg.raw_prefix), r.objects(cfg.bucket, cfg.raw_error_prefix)]
    log_group = r.log_group(FIREHOSE_LOG_GROUP.format(name=cfg.delivery_stream))
    return _policy(
        [
            _statement(
                "ReadSourceStream",
                [
                    "kinesis:DescribeStream",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                [r.stream],
            ),
            _statement(
                "LakeBucket",
                ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                [r.bucket(cfg.bucket)],
            ),
            _statement("WriteRawPrefixes", ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"], raw),
            _statement("LogDeliveryErrors", ["logs:PutLogEvents"], [f"{log_group}:log-stream:*"]),
        ]
    )


def flink_policy(cfg: Settings, target: Target) -> dict:
    """The Managed Flink service execution role: code, source stream, ``streaming/`` sinks, logs."""
    r = Resources(cfg, target)
    log_group = r.log_group(FLINK_LOG_GROUP.format(name=cfg.flink_app))
    return _policy(
        [
            _statement(
                "ReadApplicationCode",
                ["s3:GetObject", "s3:GetObjectVersion"],
                [f"{r.bucket(cfg.artifacts_bucket)}/{cfg.flink_code_key}"],
            ),
            _statement(
                "ReadSourceStream",
                [
                    "kinesis:DescribeStream",
                    "kinesis:DescribeStreamSummary",
                    "kinesis:GetRecords",
                    "kinesis:GetShardIterator",
                    "kinesis:ListShards",
                ],
                [r.stream],
            ),
            _statement("LakeBucket", ["s3:GetBucketLocation", "s3:ListBucket"], [r.bucket(cfg.bucket)]),
            # the file sinks write multipart uploads and commit them on checkpoints
            _statement(
                "WriteStreamingSinks",
                [
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:ListMultipartUploadParts",
                    "s3:PutObject",
                ],
                [r.objects(cfg.bucket, cfg.streaming_prefix)],
            ),
            _statement("FindLogGroups", ["logs:DescribeLogGroups"], [r.log_group("*")]),
            _statement("FindLogStreams", ["logs:DescribeLogStreams"], [f"{log_group}:log-stream:*"]),
            _statement("WriteLogs", ["logs:PutLogEvents"], [f"{log_group}:log-stream:{FLINK_LOG_STREAM}"]),
        ]
    )


def trust_policy(role: str, cfg: Settings, target: Target) -> dict:
    """Who may assume the role, with the confused-deputy conditions AWS recommends for each service."""
    r = Resources(cfg, target)
    if role == "airflow":
        principal = ["airflow-env.amazonaws.com", "airflow.amazonaws.com"]
        condition = {"StringEquals": {"aws:SourceAccount": target.account}}
    elif role == "firehose":
        principal = "firehose.amazonaws.com"
        condition = {"StringEquals": {"sts:ExternalId": target.account}}
    elif role == "flink":
        principal = "kinesisanalytics.amazonaws.com"
        condition = {
            "StringEquals": {"aws:SourceAccount": target.account},
            "ArnEquals": {"aws:SourceArn": r.application},
        }
    else:
        raise IamConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return _policy(
        [
            {
                "Effect": "Allow",
                "Principal": {"Service": principal},
                "Action": "sts:AssumeRole",
                "Condition": condition,
            }
        ]
    )


def policy(role: str, cfg: Settings, target: Target, *, teardown: bool = True) -> dict:
    if role == "airflow":
        return airflow_policy(cfg, target, teardown=teardown)
    if role == "firehose":
        return firehose_policy(cfg, target)
    if role == "flink":
        return flink_policy(cfg, target)
    raise IamConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m include.iam",
        description="Print a least-privilege IAM policy of one of the pipeline's roles.",
    )
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--trust", action="store_true", help="print the role's trust policy instead")
    parser.add_argument(
        "--no-teardown", action="store_true", help="airflow: leave out what only clickstream_teardown needs"
    )
    parser.add_argument("--account", help="12-digit account id (default: the account of the role ARNs)")
    parser.add_argument("--region", help="AWS region (default: AWS_REGION or AWS_DEFAULT_REGION)")
    args = parser.parse_args(argv)
    try:
        cfg = settings()
        target = target_for(cfg, args.account, args.region)
        if args.trust:
            document = trust_policy(args.role, cfg, target)
        else:
            document = policy(args.role, cfg, target, teardown=not args.no_teardown)
    except ValueError as exc:  # IamConfigError, or a CLICKSTREAM_* variable Settings refuses
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

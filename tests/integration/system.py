"""System tests shaped like the amazon provider's: TEST SETUP (``clickstream_setup``) → TEST BODY → TEST TEARDOWN
(``clickstream_teardown``, run whatever the body did), against the local endpoint or an AWS sandbox account.

The account is chosen by the ``aws_default`` connection only. With ``CLICKSTREAM_SYSTEM_TEST_CONN`` unset, the
session's local endpoint is used. To run against a sandbox account, set it to an Airflow connection in JSON
whose credentials come from the connection itself (login/password, or ``profile_name`` / ``role_arn`` in the
extra: the test session exports fake ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` so nothing else picks up
real credentials by accident), and give the resources names of their own, for example::

    CLICKSTREAM_SYSTEM_TEST_CONN='{"conn_type": "aws", "extra": {"region_name": "eu-west-1",
        "profile_name": "clickstream-sandbox"}}' \\
    CLICKSTREAM_BUCKET=clickstream-lake-sbx-1234 CLICKSTREAM_ARTIFACTS_BUCKET=clickstream-artifacts-sbx-1234 \\
    CLICKSTREAM_FIREHOSE_ROLE_ARN=arn:aws:iam::<account>:role/clickstream-firehose \\
    CLICKSTREAM_FLINK_ROLE_ARN=arn:aws:iam::<account>:role/clickstream-flink \\
    CLICKSTREAM_KINESIS_CONNECTOR_JAR=/path/to/flink-sql-connector-aws-kinesis-streams-6.0.0-2.0.jar \\
    .venv/bin/pytest -q tests/integration/test_system_pipeline.py -p no:cacheprovider

(``CLICKSTREAM_SYSTEM_TEST_FIREHOSE_BUFFER_SECONDS``, 60 by default there, replaces the local 2 s buffer.)
The teardown then deletes everything setup created in that account.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from include.aws import client
from include.config import Settings, settings

#: An Airflow ``aws`` connection (JSON) of an AWS sandbox account; unset = the local endpoint.
SANDBOX_CONN_ENV = "CLICKSTREAM_SYSTEM_TEST_CONN"


def sandbox_connection() -> str | None:
    return os.environ.get(SANDBOX_CONN_ENV) or None


@contextmanager
def sandbox_account(conn: str) -> Iterator[None]:
    """Point ``aws_default`` at the sandbox for the block (and a Firehose buffer AWS accepts)."""
    saved = {
        k: os.environ.get(k) for k in ("AIRFLOW_CONN_AWS_DEFAULT", "CLICKSTREAM_FIREHOSE_BUFFER_SECONDS")
    }
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = conn
    os.environ["CLICKSTREAM_FIREHOSE_BUFFER_SECONDS"] = os.environ.get(
        "CLICKSTREAM_SYSTEM_TEST_FIREHOSE_BUFFER_SECONDS", "60"
    )
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def teardown_conf(cfg: Settings | None = None) -> dict[str, Any]:
    return {"confirm": (cfg or settings()).bucket}


def leftover_resources(cfg: Settings | None = None) -> dict[str, list[str]]:
    """Everything of this environment that is still listed in the account, by kind (empty when all is gone).

    Lists, rather than describes, so what a later List call would show (and what costs money) is checked.
    """
    cfg = cfg or settings()
    left: dict[str, list[str]] = {}

    def note(kind: str, names) -> None:
        names = sorted(names)
        if names:
            left[kind] = names

    buckets = {b["Name"] for b in client("s3").list_buckets().get("Buckets", [])}
    note("s3", buckets & {cfg.bucket, cfg.artifacts_bucket})
    streams = {
        s for page in client("kinesis").get_paginator("list_streams").paginate() for s in page["StreamNames"]
    }
    note("kinesis", streams & {cfg.stream_name})
    note("firehose", set(_delivery_streams()) & {cfg.delivery_stream})
    apps = {
        a["ApplicationName"]
        for page in client("kinesisanalyticsv2").get_paginator("list_applications").paginate()
        for a in page["ApplicationSummaries"]
    }
    note("kinesisanalyticsv2", apps & {cfg.flink_app})
    sns = client("sns")
    topics = [t["TopicArn"] for page in sns.get_paginator("list_topics").paginate() for t in page["Topics"]]
    note("sns", {arn for arn in topics if arn.rsplit(":", 1)[-1] == cfg.alert_topic})
    subscriptions = [
        s
        for page in sns.get_paginator("list_subscriptions").paginate()
        for s in page["Subscriptions"]
        if s["TopicArn"].rsplit(":", 1)[-1] == cfg.alert_topic
    ]
    note("sns-subscription", {f"{s['Protocol']}:{s['Endpoint']}" for s in subscriptions})
    queues = client("sqs").list_queues(QueueNamePrefix=cfg.alert_queue).get("QueueUrls", [])
    note("sqs", {url for url in queues if url.rsplit("/", 1)[-1] == cfg.alert_queue})
    glue = client("glue")
    databases = {
        d["Name"] for page in glue.get_paginator("get_databases").paginate() for d in page["DatabaseList"]
    }
    note("glue", databases & {cfg.glue_database})
    if cfg.glue_database in databases:
        try:
            tables = [
                t["Name"]
                for page in glue.get_paginator("get_tables").paginate(DatabaseName=cfg.glue_database)
                for t in page["TableList"]
            ]
        except ClientError:
            tables = []
        note("glue-table", tables)
    return left


def settled_leftovers(timeout_s: float = 120) -> dict[str, list[str]]:
    """:func:`leftover_resources` once it is empty, or what is still listed after ``timeout_s`` (AWS may list
    a deleted queue or bucket for a while)."""
    deadline = time.monotonic() + timeout_s
    while (left := leftover_resources()) and time.monotonic() < deadline:
        time.sleep(5)
    return left


def _delivery_streams() -> list[str]:
    firehose, names, start = client("firehose"), [], None
    while True:
        kwargs = {"Limit": 100} | ({"ExclusiveStartDeliveryStreamName": start} if start else {})
        page = firehose.list_delivery_streams(**kwargs)
        names += page["DeliveryStreamNames"]
        if not page.get("HasMoreDeliveryStreams") or not page["DeliveryStreamNames"]:
            return names
        start = names[-1]

"""Names and tunables of the pipeline's AWS resources, in one place.

Everything has a default that works against the local endpoint and on AWS alike; a deployment overrides a
value with the environment variable named beside it (for example ``CLICKSTREAM_BUCKET``, since S3 bucket names
are global on AWS). The endpoint itself is never configured here: it lives in the ``aws_default`` connection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from None


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name) or default
    if raw.strip().upper() not in choices:
        raise ValueError(f"environment variable {name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw.strip().upper()


AWS_CONN_ID = "aws_default"


@dataclass(frozen=True)
class Settings:
    """Resource names and tunables; build with :func:`settings` so environment overrides apply."""

    bucket: str = field(default_factory=lambda: _env("CLICKSTREAM_BUCKET", "clickstream-lake"))
    artifacts_bucket: str = field(
        default_factory=lambda: _env("CLICKSTREAM_ARTIFACTS_BUCKET", "clickstream-artifacts")
    )
    stream_name: str = field(default_factory=lambda: _env("CLICKSTREAM_STREAM", "clickstream-events"))
    shard_count: int = field(default_factory=lambda: _env_int("CLICKSTREAM_SHARDS", 2))
    delivery_stream: str = field(
        default_factory=lambda: _env("CLICKSTREAM_DELIVERY_STREAM", "clickstream-raw-delivery")
    )
    #: Firehose buffering: whichever of size or interval is reached first flushes an object.
    firehose_buffer_seconds: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_FIREHOSE_BUFFER_SECONDS", 60)
    )
    #: AWS requires at least 64 MiB when dynamic partitioning is on.
    firehose_buffer_mb: int = field(default_factory=lambda: _env_int("CLICKSTREAM_FIREHOSE_BUFFER_MB", 64))
    firehose_role_arn: str = field(
        default_factory=lambda: _env(
            "CLICKSTREAM_FIREHOSE_ROLE_ARN", "arn:aws:iam::123456789012:role/clickstream-firehose"
        )
    )
    alert_topic: str = field(default_factory=lambda: _env("CLICKSTREAM_ALERT_TOPIC", "clickstream-alerts"))
    #: Comma-separated e-mail addresses subscribed to the alert topic (none by default).
    alert_emails: str = field(default_factory=lambda: _env("CLICKSTREAM_ALERT_EMAILS", ""))
    #: An SQS queue subscribed to the alert topic, so alerts can be read back (tests, the dashboard).
    alert_queue: str = field(
        default_factory=lambda: _env("CLICKSTREAM_ALERT_QUEUE", "clickstream-alerts-inbox")
    )
    glue_database: str = field(default_factory=lambda: _env("CLICKSTREAM_GLUE_DATABASE", "clickstream"))
    flink_app: str = field(default_factory=lambda: _env("CLICKSTREAM_FLINK_APP", "clickstream-sessions"))
    #: Checkpoints commit the Flink sinks' files; the local endpoint's tests and demo use a few seconds.
    flink_checkpoint_ms: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_FLINK_CHECKPOINT_MS", 60_000)
    )
    #: How often the Flink sinks roll their in-progress files (Flink duration syntax).
    flink_rollover: str = field(default_factory=lambda: _env("CLICKSTREAM_FLINK_ROLLOVER", "1 min"))
    #: Where the Flink app's Kinesis source starts when it runs without a snapshot (SKIP_RESTORE_FROM_SNAPSHOT or
    #: the first start): TRIM_HORIZON re-reads the stream's retention, LATEST only what arrives from then on.
    flink_source_init_position: str = field(
        default_factory=lambda: _env_choice(
            "CLICKSTREAM_FLINK_SOURCE_INIT_POSITION", "TRIM_HORIZON", ("TRIM_HORIZON", "LATEST")
        )
    )
    #: A local path of the Flink Kinesis SQL connector jar that setup puts into the application zip (see
    #: include/flink_app/package.py); empty leaves it out (enough for the local endpoint, not for AWS).
    kinesis_connector_jar: str = field(default_factory=lambda: _env("CLICKSTREAM_KINESIS_CONNECTOR_JAR", ""))
    #: A local path of a prebuilt source-format jar (``python -m include.flink_app.format_jar --out jars/``) that
    #: setup puts into the application zip; empty compiles it on the worker, which needs a JDK and PyFlink (local
    #: only: MWAA workers have neither). A jar built from other Java sources than include/'s is refused.
    flink_format_jar: str = field(default_factory=lambda: _env("CLICKSTREAM_FLINK_FORMAT_JAR", ""))
    flink_role_arn: str = field(
        default_factory=lambda: _env(
            "CLICKSTREAM_FLINK_ROLE_ARN", "arn:aws:iam::123456789012:role/clickstream-flink"
        )
    )

    # Layout of the data lake bucket. Firehose expressions are evaluated by Firehose (or the local companion).
    raw_prefix: str = "raw/events/"
    raw_error_prefix: str = "raw/errors/"
    compacted_prefix: str = "compacted/events/"
    quarantine_prefix: str = "quarantine/events/"
    manifest_prefix: str = "manifests/compaction/"
    #: The Flink app's sinks: streaming/sessions/, streaming/metrics/, streaming/late_events/, …
    streaming_prefix: str = "streaming/"
    #: Where the setup DAG uploads the Flink application zip (artifacts bucket).
    flink_code_key: str = "flink/clickstream-sessions.zip"
    #: Batch sessions of each hour, recomputed from the compacted events (``dt=YYYY-MM-DD/hr=HH/``).
    batch_sessions_prefix: str = "batch/sessions/"
    #: Hourly reconciliation reports (report.json, differences.parquet), ``dt=YYYY-MM-DD/hr=HH/``.
    reconciliation_reports_prefix: str = "reports/reconciliation/"

    # Reconciliation of streamed against batch sessions (include/reconciliation).
    #: L: the batch reads to H + 1 h + L to finish hour H's sessions; later-ending ones are ``deferred``.
    reconcile_settle_minutes: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_RECONCILE_SETTLE_MINUTES", 30)
    )
    #: K: a session of H still open at H's settle horizon is completed by the reconciliations of the next K hours
    #: (each republishes H read up to its own horizon); one still open then stays cut at H + 1 h + L + K h.
    reconcile_complete_hours: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_RECONCILE_COMPLETE_HOURS", 3)
    )
    #: An hour fails when unexplained sessions (or events) exceed this share of the batch's.
    reconcile_max_unexplained_share: float = field(
        default_factory=lambda: _env_float("CLICKSTREAM_RECONCILE_MAX_UNEXPLAINED_SHARE", 0.001)
    )
    #: How many arrival hours after H the late and rejected ledgers are read for hour H.
    reconcile_ledger_hours: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_RECONCILE_LEDGER_HOURS", 48)
    )
    #: How long the reconciliation of an hour waits for its inputs (compaction manifests, the stream's progress
    #: marker) before its sensor times out and alerts.
    reconcile_wait_timeout_minutes: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_RECONCILE_WAIT_TIMEOUT_MINUTES", 360)
    )
    #: The deadline alert fires when an hour is not reconciled this long after the hour's end.
    reconcile_deadline_minutes: int = field(
        default_factory=lambda: _env_int("CLICKSTREAM_RECONCILE_DEADLINE_MINUTES", 180)
    )

    @property
    def firehose_prefix(self) -> str:
        """Dynamic partitioning by the event hour of client_timestamp (see :data:`PARTITION_QUERY`)."""
        return (
            f"{self.raw_prefix}event_date=!{{partitionKeyFromQuery:event_date}}/"
            "event_hour=!{partitionKeyFromQuery:event_hour}/"
        )

    @property
    def firehose_error_prefix(self) -> str:
        return f"{self.raw_error_prefix}!{{firehose:error-output-type}}/!{{timestamp:yyyy/MM/dd/HH}}/"


#: jq (JQ-1.6 engine on AWS) query extracting the partition keys. It fails, and Firehose routes the record to
#: the error prefix, when client_timestamp is not a string shaped like an ISO-8601 timestamp.
PARTITION_QUERY = (
    'if (.client_timestamp | type) == "string" and (.client_timestamp | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:"))'
    " then {event_date: .client_timestamp[0:10], event_hour: .client_timestamp[11:13]}"
    ' else error("client_timestamp is missing or not ISO-8601") end'
)


def settings() -> Settings:
    return Settings()

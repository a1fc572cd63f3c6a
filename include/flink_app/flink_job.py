"""Build and submit the sessions job from Managed Flink style property groups: the one code path of AWS and local.

The Managed Service for Apache Flink entry point (``include/flink_app/main.py``) and the local runner
(:mod:`localdev.flink_runner`) both call :func:`job_from_properties` and :func:`submit`; only the
connector options in the property groups differ (``kinesis`` + ``s3://`` sinks on AWS, ``filesystem`` on a local
spool directory + local sinks). PyFlink is imported lazily so the SQL can be built and inspected without a JVM.

Property groups (``PropertyGroupId`` -> keys):

* ``consumer.config.0``: ``connector`` = ``kinesis`` (default) with ``stream.arn``, ``aws.region`` and optional
  ``source.init.position`` (default ``TRIM_HORIZON``) and other ``aws.*`` / ``source.*`` options of the
  flink-sql-connector-aws-kinesis-streams source; or ``connector`` = ``filesystem`` with ``path`` and optional
  ``source.monitor-interval`` (continuous; without it the path is read once and the job finishes).
* ``sink.config.0``: ``output.path`` (``s3://bucket/prefix`` or a local directory) and optional
  ``rollover.interval`` (default ``1 min``) and ``check.interval`` (default ``10 s``).
* ``contract.config.0`` (optional): overrides of :class:`SessionContract` (``gap.ms``, ...).
* ``flink.config.0`` (optional): extra Flink/table configuration, e.g. ``table.exec.source.idle-timeout``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include.sessions.contract import ContractError, SessionContract
from include.sessions.templates import render, split_statements

GROUP_CONSUMER = "consumer.config.0"
GROUP_SINK = "sink.config.0"
GROUP_CONTRACT = "contract.config.0"
GROUP_FLINK = "flink.config.0"
KNOWN_GROUPS = (GROUP_CONSUMER, GROUP_SINK, GROUP_CONTRACT, GROUP_FLINK)
#: Groups Managed Flink itself reads (the zip's entry point and jars); present on AWS, ignored here.
IGNORED_GROUPS = ("kinesis.analytics.flink.run.options",)

#: The templates the job renders, in statement order (sources, views, sinks, then the statement set).
TEMPLATES = ("flink/source.sql", "flink/views.sql", "flink/sinks.sql", "flink/inserts.sql")

#: The source's format: include/flink_app/java, built by :mod:`include.flink_app.format_jar` into the jar that
#: :data:`FORMAT_JAR` names, which must be on ``pipeline.jars`` (see :func:`with_jar`).
SOURCE_FORMAT = "clickstream-event"
FORMAT_JAR = "clickstream-event-format.jar"
#: The format's BOOLEAN column: the record is one JSON object and nothing else (the 'not_json_object' rule).
JSON_OBJECT_COLUMN = "one_json_object"
#: The format's column with the epoch milliseconds of a plain wire timestamp, NULL for any other value
#: (EventRecordDeserializer.wireTimeMs): the job parses and formats only the other timestamps per event.
WIRE_TIME_MS_COLUMN = "client_timestamp_ms"
#: The record members the source extracts (each as JSON_VALUE would, in one parse of the record).
EVENT_FIELDS = ("event_id", "user_id", "device_id", "client_event", "client_timestamp", "countrycode")

#: Sink table name -> sub-directory under ``output.path``.
SINK_DIRS = {
    "sessions_sink": "sessions",
    "metrics_sink": "metrics",
    "late_sink": "late_events",
    "rejected_sink": "rejected_events",
}


class JobConfigError(ValueError):
    """A property group is missing a key or has an unknown or invalid one; the message names group and key."""


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to submit the job: DDL statements, the INSERTs of the statement set and configuration."""

    contract: SessionContract
    ddl: list[str]
    inserts: list[str]
    config: dict[str, str] = field(default_factory=dict)

    def script(self) -> str:
        """The whole job as one SQL script (for review and for the SQL client)."""
        return "".join(f"{s};\n\n" for s in [*self.ddl, *self.inserts])


def _require(group: Mapping[str, str], group_id: str, key: str) -> str:
    value = group.get(key)
    if value is None or str(value).strip() == "":
        raise JobConfigError(f"property group {group_id!r} needs {key!r} (got {dict(group)!r})")
    return str(value).strip()


def source_options(consumer: Mapping[str, str]) -> dict[str, str]:
    """The events table's WITH options from ``consumer.config.0``; the format is always :data:`SOURCE_FORMAT`."""
    consumer = {str(k): str(v) for k, v in consumer.items()}
    connector = consumer.pop("connector", "kinesis").strip()
    if connector == "kinesis":
        options = {
            "connector": "kinesis",
            "stream.arn": _require(consumer, GROUP_CONSUMER, "stream.arn"),
            "aws.region": _require(consumer, GROUP_CONSUMER, "aws.region"),
            "source.init.position": consumer.pop("source.init.position", "TRIM_HORIZON"),
        }
        consumer.pop("stream.arn")
        consumer.pop("aws.region")
        for key, value in consumer.items():
            if not (key.startswith("aws.") or key.startswith("source.")):
                raise JobConfigError(
                    f"property {key!r} = {value!r} in {GROUP_CONSUMER!r} is not a Kinesis source option "
                    "(expected aws.* or source.*)"
                )
            options[key] = value
    elif connector == "filesystem":
        options = {"connector": "filesystem", "path": _require(consumer, GROUP_CONSUMER, "path")}
        consumer.pop("path")
        interval = consumer.pop("source.monitor-interval", None)
        if interval:
            options["source.monitor-interval"] = interval
        if consumer:
            raise JobConfigError(
                f"unknown properties {sorted(consumer)} in {GROUP_CONSUMER!r} for the filesystem connector "
                "(known: path, source.monitor-interval)"
            )
    else:
        raise JobConfigError(
            f"{GROUP_CONSUMER!r} connector must be 'kinesis' or 'filesystem', got {connector!r}"
        )
    options["format"] = SOURCE_FORMAT
    return options


def sink_options(sink: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """WITH options of the four filesystem sinks under ``output.path`` (exactly-once files on checkpoints)."""
    sink = {str(k): str(v) for k, v in sink.items()}
    base = _require(sink, GROUP_SINK, "output.path").rstrip("/")
    rollover = sink.pop("rollover.interval", "1 min")
    check = sink.pop("check.interval", "10 s")
    sink.pop("output.path")
    if sink:
        raise JobConfigError(
            f"unknown properties {sorted(sink)} in {GROUP_SINK!r} (known: output.path, rollover.interval, "
            "check.interval)"
        )
    result: dict[str, dict[str, str]] = {}
    for table, sub_dir in SINK_DIRS.items():
        options = {
            "connector": "filesystem",
            "path": f"{base}/{sub_dir}",
            "format": "json",
            # Row formats roll part files by time/size; a rolled file is committed by the next checkpoint.
            "sink.rolling-policy.rollover-interval": rollover,
            "sink.rolling-policy.inactivity-interval": rollover,
            "sink.rolling-policy.check-interval": check,
            "sink.partition-commit.policy.kind": "success-file",
        }
        if table == "metrics_sink":
            # A metrics hour is complete once the watermark passes its end: then _SUCCESS is written.
            options.update(
                {
                    "sink.partition-commit.trigger": "partition-time",
                    "partition.time-extractor.timestamp-pattern": "$dt $hr:00:00",
                    "sink.partition-commit.delay": "1 h",
                    "sink.partition-commit.watermark-time-zone": "UTC",
                }
            )
        else:
            # Sessions have no upper bound on length, late/rejected are by arrival: mark partitions on commit.
            options.update(
                {"sink.partition-commit.trigger": "process-time", "sink.partition-commit.delay": "0 s"}
            )
        result[table] = options
    return result


#: Planner and runtime settings that make the job cheaper without changing a row (measured: bench/flink_ratio_bench.py).
PERFORMANCE_CONFIG = {
    # The four INSERTs read the same views; each INSERT expands them anew, so without this the planner reuses only
    # the source: the reject rules ran once per branch and the dedup twice (the metrics branch prunes
    # client_timestamp, so its dedup differed). With it, identical sub-plans are found by digest and optimized
    # once: one reject-rule evaluation and one dedup per event.
    "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
    # Chained operators hand records on instead of copying each one. Safe for a job of SQL operators only (they
    # copy what they keep; FLIP-329), which this job is: no Python or Java UDF (the source format builds a new row
    # per record and keeps none).
    "pipeline.object-reuse": "true",
}


def table_config(contract: SessionContract, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Configuration the SQL relies on: UTC rendering and the dedup state TTL (= the dedup horizon), plus
    :data:`PERFORMANCE_CONFIG`."""
    config = {
        "table.local-time-zone": contract.time_zone,
        "table.exec.state.ttl": f"{contract.dedup_horizon_ms} ms",
        "pipeline.name": "clickstream-sessions",
        **PERFORMANCE_CONFIG,
    }
    for key, value in (extra or {}).items():
        if key in ("table.local-time-zone", "table.exec.state.ttl"):
            raise JobConfigError(
                f"{key!r} = {value!r} is derived from the session contract; change the contract"
            )
        config[str(key)] = str(value)
    return config


def build_job(
    contract: SessionContract,
    source: Mapping[str, str],
    sinks: Mapping[str, Mapping[str, str]],
    extra_config: Mapping[str, str] | None = None,
) -> JobSpec:
    """Render the four Flink templates into DDL statements and the INSERTs of one statement set."""
    missing = sorted(set(SINK_DIRS) - set(sinks))
    if missing:
        raise JobConfigError(f"sink options missing for {missing}")
    source_sql, views_sql, sinks_sql, inserts_sql = TEMPLATES
    columns = {
        "JSON_OBJECT_COLUMN": JSON_OBJECT_COLUMN,
        "WIRE_TIME_MS_COLUMN": WIRE_TIME_MS_COLUMN,
        "EVENT_FIELDS": EVENT_FIELDS,
    }
    ddl = (
        split_statements(render(source_sql, contract, source_options=dict(source), **columns))
        + split_statements(render(views_sql, contract, **columns))
        + split_statements(render(sinks_sql, contract, **{k: dict(v) for k, v in sinks.items()}))
    )
    inserts = split_statements(render(inserts_sql, contract))
    return JobSpec(contract=contract, ddl=ddl, inserts=inserts, config=table_config(contract, extra_config))


def job_from_properties(groups: Mapping[str, Mapping[str, str]]) -> JobSpec:
    """The job described by Managed Flink property groups (see the module docstring)."""
    unknown = sorted(set(groups) - set(KNOWN_GROUPS) - set(IGNORED_GROUPS))
    if unknown:
        raise JobConfigError(f"unknown property groups {unknown}; known: {list(KNOWN_GROUPS)}")
    if GROUP_CONSUMER not in groups:
        raise JobConfigError(f"property group {GROUP_CONSUMER!r} is required")
    if GROUP_SINK not in groups:
        raise JobConfigError(f"property group {GROUP_SINK!r} is required")
    try:
        contract = SessionContract.from_properties(groups.get(GROUP_CONTRACT))
    except ContractError as exc:
        raise JobConfigError(f"{GROUP_CONTRACT}: {exc}") from None
    return build_job(
        contract,
        source_options(groups[GROUP_CONSUMER]),
        sink_options(groups[GROUP_SINK]),
        groups.get(GROUP_FLINK),
    )


def parse_application_properties(data: Any) -> dict[str, dict[str, str]]:
    """``application_properties.json`` (a list of PropertyGroupId/PropertyMap objects) as a dict of groups."""
    if not isinstance(data, list):
        raise JobConfigError(
            f"application properties must be a JSON list of PropertyGroupId/PropertyMap objects, got "
            f"{type(data).__name__}"
        )
    groups: dict[str, dict[str, str]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "PropertyGroupId" not in item:
            raise JobConfigError(f"application properties item {i} has no PropertyGroupId: {item!r}")
        group_id = item["PropertyGroupId"]
        props = item.get("PropertyMap", {})
        if not isinstance(props, dict):
            raise JobConfigError(f"PropertyMap of {group_id!r} must be an object, got {props!r}")
        if group_id in groups:
            raise JobConfigError(f"property group {group_id!r} appears twice")
        groups[group_id] = {str(k): str(v) for k, v in props.items()}
    return groups


def to_application_properties(groups: Mapping[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    """The inverse of :func:`parse_application_properties` (for local runs and CreateApplication)."""
    return [{"PropertyGroupId": gid, "PropertyMap": dict(props)} for gid, props in groups.items()]


def with_jar(config: Mapping[str, str], jar: Path) -> dict[str, str]:
    """``config`` with ``jar`` added to ``pipeline.jars`` (PyFlink adds them to its class loader and, at submission,
    to the jars already configured, such as Managed Flink's ``jarfile``); FileNotFoundError if it is missing."""
    if not jar.is_file():
        raise FileNotFoundError(f"jar {jar} does not exist")
    jars = [j for j in str(config.get("pipeline.jars", "")).split(";") if j.strip()]
    uri = jar.resolve().as_uri()
    return {**config, "pipeline.jars": ";".join([*jars, uri] if uri not in jars else jars)}


def create_table_env(config: Mapping[str, str]) -> Any:
    """A streaming TableEnvironment with ``config`` applied (the session windows need streaming mode)."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in config.items():
        conf.set_string(key, str(value))
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    t_env = TableEnvironment.create(settings)
    for key, value in config.items():
        t_env.get_config().set(key, str(value))
    return t_env


def submit(t_env: Any, spec: JobSpec) -> Any:
    """Execute the DDL, then all INSERTs as one statement set (one job); returns the PyFlink TableResult."""
    for key, value in spec.config.items():
        t_env.get_config().set(key, value)
    for statement in spec.ddl:
        t_env.execute_sql(statement)
    statement_set = t_env.create_statement_set()
    for insert in spec.inserts:
        statement_set.add_insert_sql(insert)
    return statement_set.execute()

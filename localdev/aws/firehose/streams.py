"""Delivery stream definitions: AWS's semantic checks, the describe shape, and crash-safe persistence.

botocore's model has already checked types, ranges, patterns and enums (see :mod:`localdev.aws.base`);
here live the rules the model cannot express (dynamic partitioning needs a partition key in the prefix, an
error prefix and a jq MetadataExtraction processor, ...) and the local limits (compression formats,
processors and destinations the companion does not implement are refused at creation, never ignored).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jq

from localdev.aws.base import AwsError
from localdev.aws.firehose.prefixes import PrefixError, PrefixTemplate

SUPPORTED_COMPRESSION = ("UNCOMPRESSED", "GZIP")
COMPRESSION_EXTENSION = {"UNCOMPRESSED": "", "GZIP": ".gz"}
SUPPORTED_PROCESSORS = ("MetadataExtraction", "AppendDelimiterToRecord")
JQ_ENGINE = "JQ-1.6"
#: AWS's floor for SizeInMBs with dynamic partitioning on.
DYNAMIC_PARTITIONING_MIN_MB = 64
DEFAULT_SIZE_MB = 5
DEFAULT_INTERVAL_S = 300
DESTINATION_ID = "destinationId-000000000001"
UNSUPPORTED_DESTINATIONS = (
    "RedshiftDestinationConfiguration",
    "ElasticsearchDestinationConfiguration",
    "AmazonopensearchserviceDestinationConfiguration",
    "SplunkDestinationConfiguration",
    "HttpEndpointDestinationConfiguration",
    "AmazonOpenSearchServerlessDestinationConfiguration",
    "SnowflakeDestinationConfiguration",
    "IcebergDestinationConfiguration",
)


def invalid(message: str) -> AwsError:
    return AwsError("InvalidArgumentException", message)


def atomic_write_json(path: Path, value: Any) -> None:
    """Write JSON so a crash leaves either the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(value, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def parse_arn(arn: str, service: str, resource_type: str | None = None) -> tuple[str, str, str]:
    """(region, account, resource name) of an ARN, or InvalidArgumentException naming it."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != service:
        raise invalid(f"{arn!r} is not a valid {service} ARN")
    resource = parts[5]
    if resource_type is not None:
        head, sep, name = resource.partition("/")
        if head != resource_type or not sep or not name:
            raise invalid(f"{arn!r} is not a {service} {resource_type} ARN")
        resource = name
    return parts[3], parts[4], resource


@dataclass(frozen=True)
class DestinationPlan:
    """Everything delivery needs from an (already validated) ExtendedS3 description, precomputed once."""

    bucket: str
    prefix: PrefixTemplate
    error_prefix: PrefixTemplate
    size_bytes: int
    interval_seconds: int
    compression: str
    extension: str
    timezone: ZoneInfo
    dynamic_partitioning: bool
    jq_program: Any | None
    query_keys: tuple[str, ...]
    append_newline: bool


def _processors(cfg: dict) -> list[dict]:
    processing = cfg.get("ProcessingConfiguration") or {}
    if not processing.get("Enabled"):
        return []
    return list(processing.get("Processors") or [])


def _params(processor: dict) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in processor.get("Parameters") or []:
        name = p["ParameterName"]
        if name in out:
            raise invalid(f"Processor {processor['Type']} has parameter {name} more than once")
        out[name] = p["ParameterValue"]
    return out


def build_plan(cfg: dict) -> DestinationPlan:
    """Validate a normalised ExtendedS3 description semantically and precompute what delivery needs."""
    bucket_arn = cfg["BucketARN"]
    bucket = bucket_arn.split(":::", 1)[1] if ":::" in bucket_arn else ""
    if not bucket:
        raise invalid(f"BucketARN {bucket_arn!r} does not name a bucket")
    compression = cfg["CompressionFormat"]
    if compression not in SUPPORTED_COMPRESSION:
        raise invalid(
            f"CompressionFormat {compression!r} is not supported by the local Firehose "
            f"(supported: {', '.join(SUPPORTED_COMPRESSION)})"
        )
    encryption = cfg.get("EncryptionConfiguration") or {}
    if encryption.get("KMSEncryptionConfig"):
        raise invalid("EncryptionConfiguration.KMSEncryptionConfig is not supported by the local Firehose")
    conversion = cfg.get("DataFormatConversionConfiguration")
    if conversion and conversion.get("Enabled", True):
        raise invalid("DataFormatConversionConfiguration is not supported by the local Firehose")
    if cfg.get("S3BackupMode", "Disabled") != "Disabled":
        raise invalid(f"S3BackupMode {cfg['S3BackupMode']!r} is not supported by the local Firehose")
    tz_name = cfg.get("CustomTimeZone") or "UTC"
    try:
        timezone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"CustomTimeZone {tz_name!r} is not a known time zone") from None

    dp = bool((cfg.get("DynamicPartitioningConfiguration") or {}).get("Enabled"))
    prefix_text = cfg.get("Prefix") or ""
    error_text = cfg.get("ErrorOutputPrefix") or ""
    try:
        prefix = PrefixTemplate(prefix_text, role="Prefix")
        error_prefix = PrefixTemplate(error_text, role="ErrorOutputPrefix", error_prefix=True)
    except PrefixError as exc:
        raise invalid(str(exc)) from None
    if error_text and error_prefix.has_expressions and not error_prefix.uses("firehose", "error-output-type"):
        raise invalid(
            f"ErrorOutputPrefix {error_text!r} uses expressions, so it must also contain "
            "!{firehose:error-output-type}"
        )
    if prefix_text and prefix.has_expressions and not error_text:
        raise invalid(f"Prefix {prefix_text!r} uses expressions, so ErrorOutputPrefix must be specified")
    if prefix.lambda_keys:
        raise invalid(
            f"Prefix {prefix_text!r} uses partitionKeyFromLambda; Lambda processors are not supported by the "
            "local Firehose"
        )

    processors = _processors(cfg)
    seen_types: set[str] = set()
    jq_program = None
    append_newline = False
    for proc in processors:
        ptype = proc["Type"]
        if ptype in seen_types:
            raise invalid(f"Processor type {ptype} appears more than once in ProcessingConfiguration")
        seen_types.add(ptype)
        if ptype not in SUPPORTED_PROCESSORS:
            raise invalid(
                f"Processor type {ptype!r} is not supported by the local Firehose "
                f"(supported: {', '.join(SUPPORTED_PROCESSORS)})"
            )
        params = _params(proc)
        if ptype == "MetadataExtraction":
            if not dp:
                raise invalid(
                    "The MetadataExtraction processor requires DynamicPartitioningConfiguration.Enabled"
                )
            query = params.get("MetadataExtractionQuery")
            engine = params.get("JsonParsingEngine")
            if not query:
                raise invalid("MetadataExtraction processor requires the MetadataExtractionQuery parameter")
            if engine != JQ_ENGINE:
                raise invalid(f"JsonParsingEngine must be {JQ_ENGINE!r}, got {engine!r}")
            extra = set(params) - {"MetadataExtractionQuery", "JsonParsingEngine"}
            if extra:
                raise invalid(f"MetadataExtraction processor does not take parameters {sorted(extra)}")
            try:
                jq_program = jq.compile(query)
            except ValueError as exc:
                raise invalid(f"MetadataExtractionQuery {query!r} is not a valid jq program: {exc}") from None
        elif ptype == "AppendDelimiterToRecord":
            if params:
                raise invalid(f"AppendDelimiterToRecord processor does not take parameters {sorted(params)}")
            append_newline = True

    hints = cfg["BufferingHints"]
    size_mb, interval = hints["SizeInMBs"], hints["IntervalInSeconds"]
    if dp:
        if size_mb < DYNAMIC_PARTITIONING_MIN_MB:
            raise invalid(
                f"BufferingHints.SizeInMBs must be at least {DYNAMIC_PARTITIONING_MIN_MB} when dynamic "
                f"partitioning is enabled, got {size_mb}"
            )
        if interval < 1:
            raise invalid(
                "BufferingHints.IntervalInSeconds must be at least 1 when dynamic partitioning is enabled"
            )
        if not error_text:
            raise invalid("ErrorOutputPrefix is required when dynamic partitioning is enabled")
        if not prefix.query_keys:
            raise invalid(
                f"Prefix {prefix_text!r} must contain at least one !{{partitionKeyFromQuery:<key>}} "
                "expression "
                "when dynamic partitioning is enabled"
            )
        if jq_program is None:
            raise invalid(
                "Prefix uses partitionKeyFromQuery, which needs a MetadataExtraction processor with "
                "MetadataExtractionQuery and JsonParsingEngine JQ-1.6 in an enabled ProcessingConfiguration"
            )
    elif prefix.query_keys:
        raise invalid(
            f"Prefix {prefix_text!r} uses partitionKeyFromQuery, which requires "
            "DynamicPartitioningConfiguration.Enabled"
        )

    return DestinationPlan(
        bucket=bucket,
        prefix=prefix,
        error_prefix=error_prefix,
        size_bytes=size_mb * 1024 * 1024,
        interval_seconds=interval,
        compression=compression,
        extension=cfg["FileExtension"] if cfg.get("FileExtension") else COMPRESSION_EXTENSION[compression],
        timezone=timezone,
        dynamic_partitioning=dp,
        jq_program=jq_program,
        query_keys=prefix.query_keys,
        append_newline=append_newline,
    )


def normalise_destination(cfg: dict) -> dict:
    """Fill AWS's defaults into an S3/ExtendedS3 configuration so describe shows what delivery uses."""
    out = copy.deepcopy(cfg)
    dp = bool((out.get("DynamicPartitioningConfiguration") or {}).get("Enabled"))
    hints = dict(out.get("BufferingHints") or {})
    hints.setdefault("SizeInMBs", DYNAMIC_PARTITIONING_MIN_MB if dp else DEFAULT_SIZE_MB)
    hints.setdefault("IntervalInSeconds", DEFAULT_INTERVAL_S)
    out["BufferingHints"] = hints
    out.setdefault("CompressionFormat", "UNCOMPRESSED")
    out.setdefault("EncryptionConfiguration", {"NoEncryptionConfig": "NoEncryption"})
    out.setdefault("CloudWatchLoggingOptions", {"Enabled": False})
    out.setdefault("S3BackupMode", "Disabled")
    if "ProcessingConfiguration" in out:
        out["ProcessingConfiguration"].setdefault("Enabled", False)
        out["ProcessingConfiguration"].setdefault("Processors", [])
    if "DynamicPartitioningConfiguration" in out:
        dpc = out["DynamicPartitioningConfiguration"]
        dpc.setdefault("Enabled", False)
        dpc.setdefault("RetryOptions", {"DurationInSeconds": 300})
    return out


def merge_update(current: dict, update: dict) -> dict:
    """UpdateDestination merges into the existing destination; nested hints merge member by member."""
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key in ("BufferingHints", "CloudWatchLoggingOptions") and isinstance(value, dict):
            merged[key] = {**merged.get(key, {}), **value}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


_S3_DESCRIPTION_KEYS = (
    "RoleARN",
    "BucketARN",
    "Prefix",
    "ErrorOutputPrefix",
    "BufferingHints",
    "CompressionFormat",
    "EncryptionConfiguration",
    "CloudWatchLoggingOptions",
)


class StreamStore:
    """All delivery stream definitions of this companion, persisted as one JSON file after every change."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "streams.json"
        self.lock = threading.RLock()
        self.streams: dict[str, dict] = {}
        if self.path.exists():
            self.streams = json.loads(self.path.read_text())

    @staticmethod
    def key(region: str, name: str) -> str:
        return f"{region}/{name}"

    def save(self) -> None:
        with self.lock:
            atomic_write_json(self.path, self.streams)

    def get(self, region: str, name: str, account_id: str) -> dict:
        stream = self.streams.get(self.key(region, name))
        if stream is None:
            raise AwsError(
                "ResourceNotFoundException", f"Firehose {name} under account {account_id} not found."
            )
        return stream


def describe(stream: dict) -> dict:
    """DeliveryStreamDescription in the shape of botocore's model."""
    dest = stream["destination"]
    extended = {k: copy.deepcopy(v) for k, v in dest.items()}
    s3_description = {k: copy.deepcopy(dest[k]) for k in _S3_DESCRIPTION_KEYS if k in dest}
    destination: dict[str, Any] = {
        "DestinationId": DESTINATION_ID,
        "S3DestinationDescription": s3_description,
    }
    if stream["destination_kind"] == "ExtendedS3":
        destination["ExtendedS3DestinationDescription"] = extended
    desc: dict[str, Any] = {
        "DeliveryStreamName": stream["name"],
        "DeliveryStreamARN": stream["arn"],
        "DeliveryStreamStatus": stream["status"],
        "DeliveryStreamEncryptionConfiguration": {"Status": "DISABLED"},
        "DeliveryStreamType": stream["type"],
        "VersionId": str(stream["version"]),
        "CreateTimestamp": stream["created"],
        "Destinations": [destination],
        "HasMoreDestinations": False,
    }
    if stream.get("last_updated"):
        desc["LastUpdateTimestamp"] = stream["last_updated"]
    source = stream.get("source") or {}
    if stream["type"] == "KinesisStreamAsSource":
        desc["Source"] = {
            "KinesisStreamSourceDescription": {
                "KinesisStreamARN": source["KinesisStreamARN"],
                "RoleARN": source["RoleARN"],
                "DeliveryStartTimestamp": source["DeliveryStartTimestamp"],
            }
        }
    elif source.get("ThroughputHintInMBs"):
        desc["Source"] = {
            "DirectPutSourceDescription": {"ThroughputHintInMBs": source["ThroughputHintInMBs"]}
        }
    return desc


def now_epoch() -> float:
    return datetime.now(UTC).timestamp()

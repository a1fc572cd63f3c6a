"""Dynamic partitioning: a record's partition keys from the MetadataExtractionQuery (real jq), and the error
document Firehose writes for a record it could not place.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from localdev.aws.firehose.sources import SourceRecord
from localdev.aws.firehose.streams import DestinationPlan

#: Firehose's error-output-type and error code for records dynamic partitioning could not place.
PARTITIONING_FAILED = "partitioning-failed"
METADATA_EXTRACTION_FAILED = "DynamicPartitioning.MetadataExtractionFailed"


class PartitionFailure(Exception):
    """A record dynamic partitioning cannot place; the message becomes the error document's errorMessage."""


def extract_partition_keys(plan: DestinationPlan, data: bytes) -> dict[str, str]:
    """Run the MetadataExtractionQuery (real jq) on one record; PartitionFailure says why it cannot."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PartitionFailure("Non JSON record provided") from None
    try:
        results = plan.jq_program.input_text(text).all()
    except ValueError as exc:
        message = str(exc)
        if message.startswith("parse error"):
            raise PartitionFailure(f"Non JSON record provided ({message})") from None
        raise PartitionFailure(f"MetadataExtractionQuery failed: {message}") from None
    if not results:
        raise PartitionFailure("Non JSON record provided (empty record)")
    if len(results) > 1:
        raise PartitionFailure(
            f"MetadataExtractionQuery produced {len(results)} results; expected one object"
        )
    result = results[0]
    if not isinstance(result, dict):
        raise PartitionFailure(
            f"MetadataExtractionQuery must produce a JSON object, got {json.dumps(result)[:100]}"
        )
    keys: dict[str, str] = {}
    for name in plan.query_keys:
        value = result.get(name)
        if value is None or value == "":
            raise PartitionFailure(f"partitionKeys values must not be null or empty (key {name!r})")
        if isinstance(value, dict | list):
            raise PartitionFailure(f"partition key {name!r} must be a scalar, got {json.dumps(value)[:100]}")
        keys[name] = value if isinstance(value, str) else json.dumps(value)
    return keys


def error_document(record: SourceRecord, message: str, from_kinesis: bool) -> bytes:
    """One line of Firehose's error output for a record dynamic partitioning rejected."""
    doc: dict[str, Any] = {
        "attemptsMade": 1,
        "arrivalTimestamp": record.arrival_ms,
        "errorCode": METADATA_EXTRACTION_FAILED,
        "errorMessage": message,
        "attemptEndingTimestamp": int(time.time() * 1000),
        "rawData": base64.b64encode(record.data).decode("ascii"),
    }
    if from_kinesis:
        doc["sequenceNumber"] = record.position
    return json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\n"

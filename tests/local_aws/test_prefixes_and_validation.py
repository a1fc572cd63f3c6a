"""Pure logic, no processes: prefix expressions, Java date patterns, partition keys, model validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import botocore.session
import pytest

from include.config import PARTITION_QUERY, Settings
from localdev.aws.base import AwsError, validate_and_decode, validation_error
from localdev.aws.firehose.partitioning import PartitionFailure, extract_partition_keys
from localdev.aws.firehose.prefixes import PrefixError, PrefixTemplate, java_date_formatter
from localdev.aws.firehose.streams import build_plan, normalise_destination

WHEN = datetime(2026, 3, 7, 4, 5, 9, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy/MM/dd/HH/", "2026/03/07/04/"),
        ("yy-M-d H:m:s", "26-3-7 4:5:9"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSS", "2026-03-07T04:05:09.123"),
        ("'year='yyyy/'month='MM", "year=2026/month=03"),
        ("MMM MMMM EEE EEEE", "Mar March Sat Saturday"),
        ("DDD hh a", "066 04 AM"),
        ("'it''s'", "it's"),
    ],
)
def test_java_date_patterns(pattern, expected):
    assert java_date_formatter(pattern)(WHEN) == expected


@pytest.mark.parametrize("pattern", ["yyyy-QQ", "yyyy[MM]", "'open", "HHH"])
def test_bad_date_patterns_are_rejected(pattern):
    with pytest.raises(PrefixError):
        java_date_formatter(pattern)


def test_prefix_without_expressions_gets_the_default_layout():
    assert PrefixTemplate("raw/", role="Prefix").render(WHEN) == "raw/2026/03/07/04/"
    assert PrefixTemplate("", role="Prefix").render(WHEN) == "2026/03/07/04/"
    error = PrefixTemplate("errors/", role="ErrorOutputPrefix", error_prefix=True)
    assert (
        error.render(WHEN, error_output_type="partitioning-failed")
        == "errors/partitioning-failed/2026/03/07/04/"
    )


def test_project_prefixes_render():
    settings = Settings()
    prefix = PrefixTemplate(settings.firehose_prefix, role="Prefix")
    assert prefix.query_keys == ("event_date", "event_hour")
    rendered = prefix.render(WHEN, partition_keys={"event_date": "2026-11-27", "event_hour": "10"})
    assert rendered == "raw/events/event_date=2026-11-27/event_hour=10/"
    error = PrefixTemplate(settings.firehose_error_prefix, role="ErrorOutputPrefix", error_prefix=True)
    assert (
        error.render(WHEN, error_output_type="partitioning-failed")
        == "raw/errors/partitioning-failed/2026/03/07/04/"
    )


def test_random_string_is_fresh_per_object_and_shared_within_one():
    template = PrefixTemplate("a/!{firehose:random-string}/b/!{firehose:random-string}/", role="Prefix")
    first = template.render(WHEN).split("/")
    assert first[1] == first[3] and len(first[1]) == 11 and first[1].isalnum()
    assert template.render(WHEN).split("/")[1] != first[1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("raw/!{partitionKeyFromQuery:k", "malformed expression"),
        ("raw/!{bogus:k}/", "unknown namespace 'bogus'"),
        ("raw/!{firehose:whatever}/", "not a firehose expression"),
        ("raw/!{firehose:error-output-type}/", "only allowed in ErrorOutputPrefix"),
        ("raw/!{timestamp:}/", "empty value"),
    ],
)
def test_bad_prefixes_name_the_problem(text, message):
    with pytest.raises(PrefixError, match=message) as err:
        PrefixTemplate(text, role="Prefix")
    assert repr(text) in str(err.value)


def _plan(**overrides):
    settings = Settings()
    dest = {
        "RoleARN": "arn:aws:iam::123456789012:role/r",
        "BucketARN": "arn:aws:s3:::lake",
        "Prefix": settings.firehose_prefix,
        "ErrorOutputPrefix": settings.firehose_error_prefix,
        "DynamicPartitioningConfiguration": {"Enabled": True},
        "ProcessingConfiguration": {
            "Enabled": True,
            "Processors": [
                {
                    "Type": "MetadataExtraction",
                    "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": PARTITION_QUERY},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                    ],
                }
            ],
        },
    }
    dest.update(overrides)
    return build_plan(normalise_destination(dest))


def test_plan_defaults_and_partition_keys():
    plan = _plan(CustomTimeZone="Europe/Brussels")
    assert plan.size_bytes == 64 * 1024 * 1024  # the dynamic partitioning default
    assert plan.interval_seconds == 300
    assert plan.timezone == ZoneInfo("Europe/Brussels")
    assert plan.append_newline is False
    event = {"client_timestamp": "2026-11-27T10:15:30.123Z"}
    assert extract_partition_keys(plan, json.dumps(event).encode()) == {
        "event_date": "2026-11-27",
        "event_hour": "10",
    }


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"{not json", "Non JSON record provided"),
        (b"", "Non JSON record provided"),
        (b"\xff\xfe", "Non JSON record provided"),
        (b'{"client_timestamp": "27/11/2026"}', "client_timestamp is missing or not ISO-8601"),
        (b"[1]", "MetadataExtractionQuery failed"),
    ],
)
def test_partition_failures(record, message):
    with pytest.raises(PartitionFailure, match=message):
        extract_partition_keys(_plan(), record)


def test_null_or_empty_partition_key_fails():
    plan = _plan(
        Prefix="p/!{partitionKeyFromQuery:a}/",
        ProcessingConfiguration={
            "Enabled": True,
            "Processors": [
                {
                    "Type": "MetadataExtraction",
                    "Parameters": [
                        {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{a: .a}"},
                        {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                    ],
                }
            ],
        },
    )
    assert extract_partition_keys(plan, b'{"a": 12}') == {"a": "12"}
    for record in (b'{"a": null}', b'{"a": ""}', b"{}"):
        with pytest.raises(PartitionFailure, match="must not be null or empty"):
            extract_partition_keys(plan, record)
    with pytest.raises(PartitionFailure, match="must be a scalar"):
        extract_partition_keys(plan, b'{"a": {"b": 1}}')


def test_model_validation_collects_every_error():
    model = botocore.session.get_session().get_service_model("firehose")
    shape = model.operation_model("CreateDeliveryStream").input_shape
    errors: list[str] = []
    validate_and_decode(
        shape,
        {
            "DeliveryStreamName": "x" * 65,
            "DeliveryStreamType": "Carrier pigeon",
            "ExtendedS3DestinationConfiguration": {
                "BucketARN": "arn:aws:s3:::b",
                "BufferingHints": {"SizeInMBs": 0},
            },
        },
        "",
        errors,
    )
    text = validation_error(errors).message
    assert text.startswith("4 validation errors detected:")
    assert "'deliveryStreamName'" in text and "length less than or equal to 64" in text
    assert "'Carrier pigeon'" in text and "enum value set" in text
    assert "extendedS3DestinationConfiguration.roleARN" in text and "must not be null" in text
    assert "extendedS3DestinationConfiguration.bufferingHints.sizeInMBs" in text


def test_blobs_are_decoded_and_bad_base64_is_a_serialization_error():
    model = botocore.session.get_session().get_service_model("firehose")
    shape = model.operation_model("PutRecord").input_shape
    errors: list[str] = []
    params = validate_and_decode(
        shape, {"DeliveryStreamName": "s", "Record": {"Data": "aGVsbG8="}}, "", errors
    )
    assert errors == [] and params["Record"]["Data"] == b"hello"
    with pytest.raises(AwsError) as err:
        validate_and_decode(shape, {"DeliveryStreamName": "s", "Record": {"Data": "***"}}, "", [])
    assert err.value.code == "SerializationException" and "record.data" in err.value.message


@pytest.mark.parametrize(
    ("member", "value", "shown", "named"),
    [
        ("DeliveryStreamName", 12, "12", "a string"),
        ("DeliveryStreamName", True, "true", "a string"),
        ("ExtendedS3DestinationConfiguration", ["a", "b"], '["a", "b"]', "an object"),
        ("Tags", {"Key": "k"}, '{"Key": "k"}', "a list"),
    ],
)
def test_a_member_of_the_wrong_json_type_is_named_like_aws_does(member, value, shown, named):
    model = botocore.session.get_session().get_service_model("firehose")
    shape = model.operation_model("CreateDeliveryStream").input_shape
    errors: list[str] = []
    validate_and_decode(shape, {"DeliveryStreamName": "s", member: value}, "", errors)
    path = member[:1].lower() + member[1:]
    assert errors == [f"Value {shown} at '{path}' failed to satisfy constraint: Member must be {named}"]


def test_json_booleans_are_no_integers_and_integers_no_booleans():
    model = botocore.session.get_session().get_service_model("firehose")
    hints = model.shape_for("BufferingHints")
    errors: list[str] = []
    validate_and_decode(hints, {"SizeInMBs": True, "IntervalInSeconds": 60}, "hints", errors)
    assert errors == [
        "Value true at 'hints.sizeInMBs' failed to satisfy constraint: Member must be an integer"
    ]
    retry = model.shape_for("DynamicPartitioningConfiguration")
    errors = []
    validate_and_decode(retry, {"Enabled": 1}, "dp", errors)
    assert errors == ["Value 1 at 'dp.enabled' failed to satisfy constraint: Member must be a boolean"]


def test_numbers_and_lengths_out_of_bounds_are_named_like_aws_does():
    model = botocore.session.get_session().get_service_model("firehose")
    errors: list[str] = []
    validate_and_decode(
        model.shape_for("BufferingHints"), {"SizeInMBs": 0, "IntervalInSeconds": 901}, "h", errors
    )
    assert errors == [
        "Value '0' at 'h.sizeInMBs' failed to satisfy constraint: Member must have value greater than or equal to 1",
        "Value '901' at 'h.intervalInSeconds' failed to satisfy constraint: Member must have value less than or "
        "equal to 900",
    ]
    errors = []
    shape = model.operation_model("PutRecordBatch").input_shape
    validate_and_decode(shape, {"DeliveryStreamName": "x" * 65, "Records": []}, "", errors)
    assert errors == [
        f"Value '{'x' * 65}' at 'deliveryStreamName' failed to satisfy constraint: Member must have length less "
        "than or equal to 64",
        "Value '...' at 'records' failed to satisfy constraint: Member must have length greater than or equal to 1",
    ]

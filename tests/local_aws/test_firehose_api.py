"""The Firehose API of the companion: shapes as in botocore's model, AWS's errors, AWS's validation rules."""

from __future__ import annotations

import json
import urllib.request

import botocore.session
import pytest
from botocore.exceptions import ClientError

from include.config import PARTITION_QUERY, Settings
from tests.local_aws.support import wait_active, wait_for

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::123456789012:role/firehose"
MODEL = botocore.session.get_session().get_service_model("firehose")


def check_shape(shape, value, path="response"):
    """Raw JSON must use only members the model knows, with required members present and enums respected."""
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), path
        unknown = set(value) - set(shape.members)
        assert not unknown, f"{path}: members not in botocore's {shape.name}: {unknown}"
        missing = [m for m in shape.required_members if m not in value]
        assert not missing, f"{path}: required members missing: {missing}"
        for name, member in value.items():
            check_shape(shape.members[name], member, f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), path
        for i, item in enumerate(value):
            check_shape(shape.member, item, f"{path}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), path
        if "enum" in shape.metadata:
            assert value in shape.metadata["enum"], f"{path}: {value!r}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), path
    elif kind == "boolean":
        assert isinstance(value, bool), path
    elif kind == "timestamp":
        assert isinstance(value, int | float), path


def raw_call(endpoint, operation, body):
    request = urllib.request.Request(
        endpoint.url + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "X-Amz-Target": f"Firehose_20150804.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/firehose/aws4_request",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def source_arn(client):
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="api-source", ShardCount=1)
    return kinesis.describe_stream_summary(StreamName="api-source")["StreamDescriptionSummary"]["StreamARN"]


def dp_destination(**overrides):
    settings = Settings()
    dest = {
        "RoleARN": ROLE,
        "BucketARN": "arn:aws:s3:::api-bucket",
        "Prefix": settings.firehose_prefix,
        "ErrorOutputPrefix": settings.firehose_error_prefix,
        "BufferingHints": {"SizeInMBs": 64, "IntervalInSeconds": 60},
        "CompressionFormat": "GZIP",
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
                },
                {"Type": "AppendDelimiterToRecord"},
            ],
        },
    }
    dest.update(overrides)
    return dest


def create(firehose, name, source_arn, **dest_overrides):
    return firehose.create_delivery_stream(
        DeliveryStreamName=name,
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=dp_destination(**dest_overrides),
    )


def error_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    return err.value.response["Error"]["Code"], err.value.response["Error"]["Message"]


def test_create_describe_and_shapes(endpoint, client, source_arn):
    firehose = client("firehose")
    arn = firehose.create_delivery_stream(
        DeliveryStreamName="api-main",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": source_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration=dp_destination(),
        Tags=[{"Key": "team", "Value": "data"}],
    )["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:us-east-1:123456789012:deliverystream/api-main"

    first = firehose.describe_delivery_stream(DeliveryStreamName="api-main")["DeliveryStreamDescription"]
    assert first["DeliveryStreamStatus"] == "CREATING"
    wait_active(firehose, "api-main")

    status, raw = raw_call(endpoint, "DescribeDeliveryStream", {"DeliveryStreamName": "api-main"})
    assert status == 200
    check_shape(MODEL.operation_model("DescribeDeliveryStream").output_shape, raw)
    desc = raw["DeliveryStreamDescription"]
    assert desc["VersionId"] == "1"
    assert desc["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert desc["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == source_arn
    ext = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["Prefix"] == Settings().firehose_prefix
    assert ext["BufferingHints"] == {"SizeInMBs": 64, "IntervalInSeconds": 60}
    assert ext["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
    assert desc["Destinations"][0]["DestinationId"] == "destinationId-000000000001"

    status, raw = raw_call(endpoint, "ListDeliveryStreams", {})
    check_shape(MODEL.operation_model("ListDeliveryStreams").output_shape, raw)
    assert "api-main" in raw["DeliveryStreamNames"]

    tags = firehose.list_tags_for_delivery_stream(DeliveryStreamName="api-main")
    assert tags["Tags"] == [{"Key": "team", "Value": "data"}] and tags["HasMoreTags"] is False


def test_duplicate_and_missing_streams(client, source_arn):
    firehose = client("firehose")
    create(firehose, "api-dup", source_arn)
    with pytest.raises(firehose.exceptions.ResourceInUseException, match="api-dup"):
        create(firehose, "api-dup", source_arn)
    with pytest.raises(firehose.exceptions.ResourceNotFoundException, match="api-nope"):
        firehose.describe_delivery_stream(DeliveryStreamName="api-nope")
    with pytest.raises(firehose.exceptions.ResourceNotFoundException):
        firehose.delete_delivery_stream(DeliveryStreamName="api-nope")


def test_list_filters_and_pages(client, source_arn):
    firehose = client("firehose")
    for i in range(3):
        create(firehose, f"api-list-{i}", source_arn)
    firehose.create_delivery_stream(
        DeliveryStreamName="api-list-direct",
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": "arn:aws:s3:::api-bucket"},
    )
    page = firehose.list_delivery_streams(Limit=2, DeliveryStreamType="KinesisStreamAsSource")
    assert len(page["DeliveryStreamNames"]) == 2 and page["HasMoreDeliveryStreams"] is True
    names = []
    start = None
    while True:
        kwargs = {"Limit": 2, "DeliveryStreamType": "KinesisStreamAsSource"}
        if start:
            kwargs["ExclusiveStartDeliveryStreamName"] = start
        page = firehose.list_delivery_streams(**kwargs)
        names += page["DeliveryStreamNames"]
        if not page["HasMoreDeliveryStreams"]:
            break
        start = names[-1]
    assert {"api-list-0", "api-list-1", "api-list-2"} <= set(names)
    assert "api-list-direct" not in names
    direct = firehose.list_delivery_streams(DeliveryStreamType="DirectPut")["DeliveryStreamNames"]
    assert direct == ["api-list-direct"]


def test_delete_goes_through_deleting(client, source_arn):
    firehose = client("firehose")
    create(firehose, "api-del", source_arn)
    wait_active(firehose, "api-del")
    firehose.delete_delivery_stream(DeliveryStreamName="api-del")

    def gone():
        try:
            status = firehose.describe_delivery_stream(DeliveryStreamName="api-del")
        except firehose.exceptions.ResourceNotFoundException:
            return True
        assert status["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "DELETING"
        return False

    wait_for(gone, 15, "api-del to disappear")
    assert "api-del" not in firehose.list_delivery_streams(Limit=100)["DeliveryStreamNames"]
    create(firehose, "api-del", source_arn)  # the name is free again


def test_model_validation_messages_name_field_and_value(client, source_arn):
    firehose = client("firehose", parameter_validation=False)
    code, message = error_of(firehose.describe_delivery_stream, DeliveryStreamName="bad name!")
    assert code == "ValidationException"
    assert "'bad name!'" in message and "deliveryStreamName" in message
    code, message = error_of(
        create,
        firehose,
        "api-invalid",
        source_arn,
        BufferingHints={"SizeInMBs": 200, "IntervalInSeconds": 60},
    )
    assert code == "ValidationException"
    assert "extendedS3DestinationConfiguration.bufferingHints.sizeInMBs" in message and "200" in message
    code, message = error_of(create, firehose, "api-invalid", source_arn, CompressionFormat="BROTLI")
    assert code == "ValidationException" and "BROTLI" in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60}}, "SizeInMBs must be at least 64"),
        ({"ErrorOutputPrefix": ""}, "ErrorOutputPrefix"),
        ({"Prefix": "raw/!{timestamp:yyyy}/"}, "partitionKeyFromQuery"),
        ({"Prefix": "raw/!{partitionKeyFromQuery:event_date}/!{nope:x}/"}, "unknown namespace 'nope'"),
        ({"Prefix": "raw/!{partitionKeyFromQuery:event_date}/!{timestamp:yyyy-QQ}/"}, "pattern letter 'Q'"),
        ({"CompressionFormat": "Snappy"}, "CompressionFormat 'Snappy' is not supported"),
        ({"ErrorOutputPrefix": "errors/!{timestamp:yyyy}/"}, "!{firehose:error-output-type}"),
        ({"Prefix": "raw/!{firehose:error-output-type}/!{partitionKeyFromQuery:k}/"}, "only allowed in"),
        ({"ProcessingConfiguration": {"Enabled": False, "Processors": []}}, "MetadataExtraction processor"),
        (
            {
                "ProcessingConfiguration": {
                    "Enabled": True,
                    "Processors": [
                        {
                            "Type": "MetadataExtraction",
                            "Parameters": [
                                {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{a: .b"},
                                {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"},
                            ],
                        }
                    ],
                }
            },
            "not a valid jq program",
        ),
        (
            {"ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda"}]}},
            "Processor type 'Lambda' is not supported",
        ),
    ],
)
def test_semantic_rules(client, source_arn, overrides, expected):
    firehose = client("firehose")
    with pytest.raises(firehose.exceptions.InvalidArgumentException) as err:
        create(firehose, "api-semantic", source_arn, **overrides)
    assert expected in err.value.response["Error"]["Message"]


def test_source_must_exist_and_match_type(client):
    firehose = client("firehose")
    code, message = error_of(
        firehose.create_delivery_stream,
        DeliveryStreamName="api-nosource",
        DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={
            "KinesisStreamARN": "arn:aws:kinesis:us-east-1:123456789012:stream/does-not-exist",
            "RoleARN": ROLE,
        },
        ExtendedS3DestinationConfiguration=dp_destination(),
    )
    assert code == "InvalidArgumentException" and "does-not-exist" in message
    code, message = error_of(
        firehose.create_delivery_stream,
        DeliveryStreamName="api-nosource",
        DeliveryStreamType="KinesisStreamAsSource",
        ExtendedS3DestinationConfiguration=dp_destination(),
    )
    assert code == "InvalidArgumentException" and "KinesisStreamSourceConfiguration" in message


def test_put_record_on_kinesis_source_is_refused(client, source_arn):
    firehose = client("firehose")
    create(firehose, "api-put", source_arn)
    with pytest.raises(firehose.exceptions.InvalidArgumentException, match="KinesisStreamAsSource"):
        firehose.put_record(DeliveryStreamName="api-put", Record={"Data": b"{}"})
    with pytest.raises(firehose.exceptions.InvalidArgumentException, match="KinesisStreamAsSource"):
        firehose.put_record_batch(DeliveryStreamName="api-put", Records=[{"Data": b"{}"}])


def test_update_destination_versions(client, source_arn):
    firehose = client("firehose")
    create(firehose, "api-update", source_arn)
    wait_active(firehose, "api-update")
    with pytest.raises(firehose.exceptions.ConcurrentModificationException):
        firehose.update_destination(
            DeliveryStreamName="api-update",
            CurrentDeliveryStreamVersionId="7",
            DestinationId="destinationId-000000000001",
            ExtendedS3DestinationUpdate={"BufferingHints": {"IntervalInSeconds": 30}},
        )
    firehose.update_destination(
        DeliveryStreamName="api-update",
        CurrentDeliveryStreamVersionId="1",
        DestinationId="destinationId-000000000001",
        ExtendedS3DestinationUpdate={"BufferingHints": {"IntervalInSeconds": 30}},
    )
    desc = firehose.describe_delivery_stream(DeliveryStreamName="api-update")["DeliveryStreamDescription"]
    assert desc["VersionId"] == "2"
    assert "LastUpdateTimestamp" in desc
    hints = desc["Destinations"][0]["ExtendedS3DestinationDescription"]["BufferingHints"]
    assert hints == {"SizeInMBs": 64, "IntervalInSeconds": 30}  # merged, not replaced
    with pytest.raises(firehose.exceptions.InvalidArgumentException, match="at least 64"):
        firehose.update_destination(
            DeliveryStreamName="api-update",
            CurrentDeliveryStreamVersionId="2",
            DestinationId="destinationId-000000000001",
            ExtendedS3DestinationUpdate={"BufferingHints": {"SizeInMBs": 5}},
        )


def test_tags(client, source_arn):
    firehose = client("firehose")
    create(firehose, "api-tags", source_arn)
    firehose.tag_delivery_stream(
        DeliveryStreamName="api-tags", Tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "1"}]
    )
    firehose.tag_delivery_stream(DeliveryStreamName="api-tags", Tags=[{"Key": "a", "Value": "one"}])
    listed = firehose.list_tags_for_delivery_stream(DeliveryStreamName="api-tags")
    assert listed["Tags"] == [{"Key": "a", "Value": "one"}, {"Key": "b", "Value": "2"}]
    page = firehose.list_tags_for_delivery_stream(DeliveryStreamName="api-tags", Limit=1)
    assert page["HasMoreTags"] is True
    firehose.untag_delivery_stream(DeliveryStreamName="api-tags", TagKeys=["a"])
    assert firehose.list_tags_for_delivery_stream(DeliveryStreamName="api-tags")["Tags"] == [
        {"Key": "b", "Value": "2"}
    ]
    with pytest.raises(firehose.exceptions.LimitExceededException):
        firehose.tag_delivery_stream(
            DeliveryStreamName="api-tags", Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)]
        )


def test_unsupported_operation_and_missing_target(endpoint):
    status, body = raw_call(endpoint, "StartDeliveryStreamEncryption", {"DeliveryStreamName": "api-main"})
    assert status == 400
    assert body["__type"] == "InvalidArgumentException" and "not supported" in body["message"]
    status, body = raw_call(endpoint, "NoSuchOperation", {})
    assert status == 400 and body["__type"] == "UnknownOperationException"

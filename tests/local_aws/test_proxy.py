"""The companion forwards everything that is not Firehose to moto unchanged (S3, Kinesis, SNS→SQS, ...)."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import threading

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.local_aws.support import companion_get, make_client

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def test_health_route_lists_the_services(endpoint):
    status, body = companion_get(endpoint, "/_companion/health")
    assert status == 200
    assert body["ready"] is True
    assert "firehose" in body["services"]
    assert body["moto"] == endpoint.moto_url


def test_s3_large_object_round_trip(client):
    s3 = client("s3")
    s3.create_bucket(Bucket="proxy-large")
    payload = os.urandom(9 * MiB + 123)
    s3.put_object(Bucket="proxy-large", Key="dir/blob.bin", Body=payload, Metadata={"my_key": "v"})
    head = s3.head_object(Bucket="proxy-large", Key="dir/blob.bin")
    assert head["ContentLength"] == len(payload)
    # moto keeps S3 metadata keys with underscores only when the proxy forwards header names verbatim.
    assert head["Metadata"] == {"my_key": "v"}
    got = s3.get_object(Bucket="proxy-large", Key="dir/blob.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    ranged = s3.get_object(Bucket="proxy-large", Key="dir/blob.bin", Range="bytes=100-199")["Body"].read()
    assert ranged == payload[100:200]


def test_s3_multipart_upload_explicit_and_managed(client):
    s3 = client("s3")
    s3.create_bucket(Bucket="proxy-multipart")
    parts_data = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1 * MiB + 7)]
    upload = s3.create_multipart_upload(Bucket="proxy-multipart", Key="mp.bin")
    parts = []
    for number, data in enumerate(parts_data, start=1):
        etag = s3.upload_part(
            Bucket="proxy-multipart", Key="mp.bin", UploadId=upload["UploadId"], PartNumber=number, Body=data
        )["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket="proxy-multipart", Key="mp.bin", UploadId=upload["UploadId"], MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket="proxy-multipart", Key="mp.bin")["Body"].read() == b"".join(parts_data)

    # The transfer manager: concurrent part uploads over several kept-alive connections, non-seekable source.
    payload = os.urandom(17 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)

    class Unseekable(io.RawIOBase):
        def __init__(self, data: bytes):
            self._buf = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._buf.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    s3.upload_fileobj(Unseekable(payload), "proxy-multipart", "managed.bin", Config=config)
    out = io.BytesIO()
    s3.download_fileobj("proxy-multipart", "managed.bin", out, Config=config)
    assert out.getvalue() == payload


def test_chunked_request_body_is_forwarded(endpoint, client):
    """A raw HTTP/1.1 chunked PUT (as streaming clients send) reaches moto as the same bytes."""
    s3 = client("s3")
    s3.create_bucket(Bucket="proxy-chunked")
    pieces = [os.urandom(70_000), os.urandom(1), os.urandom(300_000)]
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    conn.putrequest("PUT", "/proxy-chunked/chunked.bin")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request")
    conn.endheaders()
    for piece in pieces:
        conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    resp.read()
    conn.close()
    assert resp.status == 200
    assert s3.get_object(Bucket="proxy-chunked", Key="chunked.bin")["Body"].read() == b"".join(pieces)


def test_s3_errors_keep_their_shape(client):
    s3 = client("s3")
    s3.create_bucket(Bucket="proxy-errors")
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="proxy-errors", Key="missing")
    with pytest.raises(ClientError) as err:
        s3.head_object(Bucket="proxy-errors", Key="missing")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(s3.exceptions.NoSuchBucket):
        s3.list_objects_v2(Bucket="proxy-no-such-bucket")


def test_kinesis_round_trip(client):
    kinesis = client("kinesis")
    kinesis.create_stream(StreamName="proxy-stream", ShardCount=2)
    records = [{"Data": f"record-{i}".encode(), "PartitionKey": f"pk-{i}"} for i in range(500)]
    result = kinesis.put_records(StreamName="proxy-stream", Records=records)
    assert result["FailedRecordCount"] == 0
    got = []
    for shard in kinesis.list_shards(StreamName="proxy-stream")["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName="proxy-stream", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        got.extend(r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"])
    assert sorted(got) == sorted(r["Data"] for r in records)
    with pytest.raises(kinesis.exceptions.ResourceNotFoundException):
        kinesis.describe_stream(StreamName="proxy-no-such-stream")


@pytest.mark.parametrize("via", ["gateway", "moto"])
def test_concurrent_kinesis_puts_lose_nothing(endpoint, client, via):
    """Plain moto numbers records without a lock and loses some; localdev.aws.moto_server fixes that."""
    url = endpoint.url if via == "gateway" else endpoint.moto_url
    stream = f"proxy-concurrent-{via}"
    kinesis = make_client(url, "kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    errors: list[BaseException] = []

    def produce(worker: int) -> None:
        own = make_client(url, "kinesis")
        try:
            for batch in range(6):
                own.put_records(
                    StreamName=stream,
                    Records=[
                        {"Data": f"{worker}-{batch}-{i}".encode(), "PartitionKey": "p"} for i in range(100)
                    ],
                )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    data = [r["Data"] for r in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]]
    assert len(data) == 8 * 6 * 100
    assert len(set(data)) == len(data)


def test_sns_to_sqs(client):
    sns, sqs = client("sns"), client("sqs")
    topic = sns.create_topic(Name="proxy-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="proxy-alerts-inbox")["QueueUrl"]
    assert queue_url.startswith("http://127.0.0.1:")  # built from the Host header the proxy kept
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    sns.publish(TopicArn=topic, Message=json.dumps({"alert": "late data"}), Subject="reconciliation")
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=2)["Messages"]
    assert json.loads(messages[0]["Body"]) == {"alert": "late data"}


def test_other_services_pass_through(client):
    assert client("sts").get_caller_identity()["Account"] == "123456789012"
    glue = client("glue")
    glue.create_database(DatabaseInput={"Name": "proxy_db"})
    assert glue.get_database(Name="proxy_db")["Database"]["Name"] == "proxy_db"
    iam = client("iam")
    role = iam.create_role(RoleName="proxy-role", AssumeRolePolicyDocument="{}")["Role"]
    assert role["Arn"] == "arn:aws:iam::123456789012:role/proxy-role"
    cloudwatch = client("cloudwatch")
    cloudwatch.put_metric_data(Namespace="Proxy", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert cloudwatch.list_metrics(Namespace="Proxy")["Metrics"][0]["MetricName"] == "m"


def test_unknown_companion_route_is_404(endpoint):
    status, body = companion_get(endpoint, "/_companion/nothing-here")
    assert status == 404
    assert "nothing-here" in body["error"]

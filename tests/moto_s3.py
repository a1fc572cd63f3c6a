"""moto's in-process S3 with one empty bucket, for the tests that read and write S3 without an endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
from moto import mock_aws


@contextmanager
def s3_with_bucket(bucket: str) -> Iterator[object]:
    """An S3 client on moto's in-process S3 holding the empty bucket ``bucket``; moto stops at the end."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=bucket)
        yield client

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from tests.compaction.helpers import BUCKET


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def hour() -> datetime:
    return datetime(2026, 11, 27, 10, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 27, 12, 5, tzinfo=UTC)

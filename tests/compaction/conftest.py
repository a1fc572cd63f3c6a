from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.compaction.helpers import BUCKET
from tests.moto_s3 import s3_with_bucket


@pytest.fixture
def s3():
    with s3_with_bucket(BUCKET) as client:
        yield client


@pytest.fixture
def hour() -> datetime:
    return datetime(2026, 11, 27, 10, tzinfo=UTC)


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 11, 27, 12, 5, tzinfo=UTC)

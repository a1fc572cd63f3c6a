"""Shared producer fixtures: batches are module-scoped because generating an hour is the slow part."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from include.producer import ProducerParams, generate

HOUR = datetime(2026, 11, 27, 10, tzinfo=UTC)


@pytest.fixture(scope="session")
def clean_hour():
    """Two hours at 20 events/s without faults, so hour boundaries and whole-hour rates can be checked."""
    params = ProducerParams(seed=11, users=3_000, events_per_second=20)
    return generate(params, HOUR - timedelta(hours=1), HOUR + timedelta(hours=1))


@pytest.fixture(scope="session")
def faulty_params():
    return ProducerParams(
        seed=5,
        users=2_000,
        events_per_second=20,
        late_fraction=0.1,
        late_delay_seconds=4_000,
        duplicate_fraction=0.05,
        resend_fraction=0.04,
        resend_delay_seconds=300,
        malformed_fraction=0.1,
    )


@pytest.fixture(scope="session")
def faulty_hour(faulty_params):
    return generate(faulty_params, HOUR, HOUR + timedelta(hours=1))

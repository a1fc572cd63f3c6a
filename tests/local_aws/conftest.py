"""Fixtures for the local endpoint's tests: a real moto + companion pair per test module, on free ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localdev.aws.endpoint import LocalEndpoint
from tests.local_aws.support import free_port_pair, make_client


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEndpoint]:
    ep = LocalEndpoint(free_port_pair(), tmp_path_factory.mktemp("local-aws"))
    ep.start(timeout=60)
    try:
        yield ep
    finally:
        ep.stop()


@pytest.fixture(scope="module")
def client(endpoint: LocalEndpoint) -> Callable[..., Any]:
    """``client("s3")``: a boto3 client for the public endpoint."""
    return lambda service, **config: make_client(endpoint.url, service, **config)

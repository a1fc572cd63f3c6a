"""A task pointed at a local endpoint that is not running must say how to start it."""

from __future__ import annotations

import socket

import pytest

from include.aws import LocalEndpointUnavailable, check_endpoint


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_local_endpoint_says_how_to_start_it():
    url = f"http://127.0.0.1:{_unused_port()}"
    with pytest.raises(LocalEndpointUnavailable) as err:
        check_endpoint(url)
    assert url in str(err.value) and "make up" in str(err.value)


def test_listening_endpoint_and_real_aws_pass():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_endpoint(f"http://127.0.0.1:{server.getsockname()[1]}")
    check_endpoint(None)  # no endpoint_url: real AWS, nothing to check

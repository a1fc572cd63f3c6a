"""boto3 clients for tasks, built from the Airflow ``aws_default`` connection.

The connection is the only thing that differs between the local endpoint and AWS: locally its extra carries
``endpoint_url: http://127.0.0.1:4566``. When that endpoint is down, the first call fails with a message that
says how to start it instead of a bare connection error.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import urlparse

from include.config import AWS_CONN_ID


class LocalEndpointUnavailable(RuntimeError):
    pass


def check_endpoint(endpoint_url: str | None) -> None:
    """Fail fast with instructions when a local endpoint URL is configured but nothing listens there."""
    if not endpoint_url:
        return
    parsed = urlparse(endpoint_url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        raise LocalEndpointUnavailable(
            f"The AWS endpoint {endpoint_url} (from the {AWS_CONN_ID!r} connection) is not reachable ({exc}). "
            "Start the local endpoint with `make up` (or `uv run python -m localdev.aws up`), "
            "or point the connection at AWS."
        ) from exc


def aws_hook(conn_id: str = AWS_CONN_ID, client_type: str | None = None) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=conn_id, client_type=client_type)


def client(service: str, conn_id: str = AWS_CONN_ID) -> Any:
    """A boto3 client for ``service`` from the Airflow connection, with the endpoint checked first."""
    hook = aws_hook(conn_id, client_type=service)
    check_endpoint(hook.conn_config.endpoint_url)
    return hook.get_conn()

"""boto3 clients for the local endpoint (or moto behind it): fake credentials, a region, botocore options.

The local endpoint checks no signature, but botocore refuses to sign without credentials, and credentials found
on the machine (a real profile) must never be sent to it, so every client gets the same fake pair. The one place
that builds such clients; the companion, the demo, the tests and the benchmarks all go through
:func:`local_client`.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
#: moto's conventional fake credentials (the access key maps to moto's default account, 123456789012).
FAKE_ACCESS_KEY_ID = "testing"
FAKE_SECRET_ACCESS_KEY = "testing"


def local_client(
    service: str,
    endpoint_url: str,
    region: str = DEFAULT_REGION,
    *,
    session: boto3.session.Session | None = None,
    **config: Any,
) -> Any:
    """A boto3 client of ``service`` at ``endpoint_url`` with fake credentials.

    ``config`` goes to :class:`botocore.config.Config` (``retries={...}``, ``max_pool_connections=16``, ...);
    without it botocore's defaults apply. The client comes from ``session``, else from a new session: boto3
    sessions are not thread-safe, while the clients are, so a caller in several threads either passes no session
    or creates its clients under a lock.
    """
    return (session or boto3.session.Session()).client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=FAKE_ACCESS_KEY_ID,
        aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        config=Config(**config),
    )

"""Helpers shared by the local endpoint's tests (ports, clients, the companion's debug routes, polling)."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config

from include.local_aws.endpoint import LocalEndpoint, port_is_free

REGION = "us-east-1"


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free on 127.0.0.1 (the companion and moto)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 60000, 2)
        if port_is_free(port) and port_is_free(port + 1):
            return port
    raise RuntimeError("no free pair of ports found")


def make_client(url: str, service: str, **config: Any) -> Any:
    return boto3.session.Session().client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
    )


def companion_get(endpoint: LocalEndpoint, path: str, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(
        endpoint.url + path, method=method, data=b"" if method == "POST" else None
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def firehose_stats(endpoint: LocalEndpoint, name: str) -> dict:
    status, body = companion_get(endpoint, f"/_companion/firehose/{name}")
    assert status == 200, body
    return body


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_active(firehose: Any, name: str, timeout: float = 10) -> None:
    wait_for(
        lambda: (
            firehose.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"][
                "DeliveryStreamStatus"
            ]
            == "ACTIVE"
        ),
        timeout,
        f"{name} to become ACTIVE",
    )


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys

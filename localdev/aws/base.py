"""The interface a service served by the companion implements, and the helpers every such service shares.

A handler serves one AWS JSON-protocol service (requests carry ``X-Amz-Target: <TargetPrefix>.<Operation>``).
The gateway validates the request body against botocore's model of the operation before the handler sees it,
so a handler only checks what the model cannot express, and answers errors the way AWS does: HTTP 400 with
``{"__type": "<ExceptionName>", "message": ...}``, which botocore turns into the matching exception class.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import boto3
import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from localdev.aws.clients import DEFAULT_REGION, local_client

#: moto's default account; every ARN the companion mints uses it so they agree with moto's ARNs.
DEFAULT_ACCOUNT_ID = "123456789012"


class AwsError(Exception):
    """An error answered to the client as AWS would: ``__type`` names the exception botocore raises."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def body(self) -> dict[str, str]:
        return {"__type": self.code, "message": self.message}


@dataclass
class ServiceRequest:
    """One decoded JSON-protocol call; ``params`` are validated, with blobs already decoded to bytes."""

    operation: str
    params: dict[str, Any]
    region: str
    account_id: str
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class CompanionContext:
    """What the gateway hands every handler: where to keep state and how to reach moto."""

    #: Private directory of this service (``<state-dir>/services/<service_name>``). It survives companion
    #: restarts and is wiped by ``up`` whenever moto starts empty, because moto keeps its state in memory.
    state_dir: Path
    #: moto's own URL (internal port): use it for calls the companion makes itself, so they skip the gateway.
    moto_url: str
    #: The public endpoint URL clients use (the gateway).
    endpoint_url: str
    logger: logging.Logger

    def client(self, service: str, region: str = DEFAULT_REGION, **config: Any) -> Any:
        """A boto3 client straight to moto (dummy credentials, a few quick retries), cached per arguments.

        boto3 clients are thread-safe; building one costs ~100 ms with a fresh session, so they are shared.
        """
        key = (service, region, tuple(sorted(config.items())))
        with _CLIENT_LOCK:
            cached = _CLIENTS.get((self.moto_url, key))
            if cached is None:
                cached = local_client(
                    service,
                    self.moto_url,
                    region,
                    session=_SESSION,
                    **{
                        "retries": {"max_attempts": 3, "mode": "standard"},
                        "connect_timeout": 5,
                        "read_timeout": 60,
                        "max_pool_connections": 32,
                        **config,
                    },
                )
                _CLIENTS[(self.moto_url, key)] = cached
            return cached


#: One boto3 session for the companion (sessions are not thread-safe: clients are created under the lock).
_SESSION = boto3.session.Session()
_CLIENT_LOCK = threading.Lock()
_CLIENTS: dict[tuple, Any] = {}


class ServiceHandler:
    """Base class of a companion service; subclass it and register it in ``gateway.SERVICE_HANDLERS``.

    Subclasses set :attr:`signing_name` (the SigV4 service name, e.g. ``firehose``),
    :attr:`target_prefixes` (the ``X-Amz-Target`` prefixes, e.g. ``("Firehose_20150804",)``) and
    :attr:`botocore_service` (the botocore model name, e.g. ``firehose``), and implement one method per
    operation, named like it (``def CreateDeliveryStream(self, request: ServiceRequest) -> dict``). The
    returned dict is serialised as JSON (bytes as base64, datetimes as epoch seconds). Raise
    :class:`AwsError` for AWS errors; anything else becomes a 500 ``InternalFailure``, logged with its
    traceback.

    ``start`` runs once after the server is listening (resume background work from ``context.state_dir``);
    ``stop`` runs on SIGTERM before the process exits (flush, persist). ``debug`` serves the non-AWS route
    ``/_companion/<signing_name>/<path>`` for tests and benchmarks.
    """

    signing_name: ClassVar[str] = ""
    target_prefixes: ClassVar[tuple[str, ...]] = ()
    botocore_service: ClassVar[str] = ""

    def __init__(self, context: CompanionContext):
        self.context = context
        self.log = context.logger
        self._model: ServiceModel | None = None
        self._model_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Resume background work; called once, after the gateway listens."""

    def stop(self) -> None:
        """Flush and persist; called once on shutdown."""

    def debug(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """Answer ``<method> /_companion/<signing_name>/<path>``; returns (HTTP status, JSON-able body)."""
        return 404, {"error": f"no debug route {method} {path!r} for {self.signing_name}"}

    # -- dispatch --------------------------------------------------------------------------------------
    @property
    def model(self) -> ServiceModel:
        with self._model_lock:
            if self._model is None:
                self._model = botocore.session.get_session().get_service_model(self.botocore_service)
            return self._model

    def operation_model(self, operation: str) -> OperationModel:
        if operation not in self.model.operation_names:
            raise AwsError(
                "UnknownOperationException", f"Unknown operation {operation!r} for {self.signing_name}"
            )
        return self.model.operation_model(operation)

    def dispatch(self, operation: str, raw_body: bytes, region: str, request_id: str, headers: dict) -> Any:
        """Decode, validate and route one call; returns the handler's response dict."""
        op_model = self.operation_model(operation)
        implementation: Callable[[ServiceRequest], Any] | None = getattr(self, operation, None)
        if implementation is None:
            raise AwsError(
                "InvalidArgumentException",
                f"Operation {operation} is not supported by the local companion for {self.signing_name}",
            )
        try:
            params = json.loads(raw_body or b"{}")
        except ValueError as exc:
            raise AwsError("SerializationException", f"Request body is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise AwsError("SerializationException", "Request body must be a JSON object")
        if op_model.input_shape is not None:
            errors: list[str] = []
            params = validate_and_decode(op_model.input_shape, params, "", errors)
            if errors:
                raise validation_error(errors)
        request = ServiceRequest(operation, params, region, DEFAULT_ACCOUNT_ID, request_id, headers)
        return implementation(request) or {}


# -- botocore-model validation, AWS style -----------------------------------------------------------------


def validation_error(errors: list[str]) -> AwsError:
    """The message AWS's request validation produces: ``1 validation error detected: Value ... at ...``."""
    count = len(errors)
    noun = "validation error" if count == 1 else "validation errors"
    return AwsError("ValidationException", f"{count} {noun} detected: " + "; ".join(errors))


def _member_path(prefix: str, name: str) -> str:
    name = name[:1].lower() + name[1:]
    return f"{prefix}.{name}" if prefix else name


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:200] + "..."


#: The JSON type each kind of shape must arrive as, and how AWS's message names it ("Member must be <name>").
_JSON_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "structure": ((dict,), "an object"),
    "list": ((list,), "a list"),
    "map": ((dict,), "a map"),
    "string": ((str,), "a string"),
    "integer": ((int,), "an integer"),
    "long": ((int,), "an integer"),
    "double": ((int, float), "a number"),
    "float": ((int, float), "a number"),
    "boolean": ((bool,), "a boolean"),
    "timestamp": ((int, float, str), "a timestamp"),
}


def _has_json_type(value: Any, types: tuple[type, ...]) -> bool:
    # JSON true/false decode to bool, which Python counts as an int: only a boolean member takes them.
    return bool in types if isinstance(value, bool) else isinstance(value, types)


def validate_and_decode(shape: Shape, value: Any, path: str, errors: list[str]) -> Any:
    """Check ``value`` against ``shape`` (required, types, min/max, pattern, enum); decode base64 blobs."""
    meta = shape.metadata
    kind = shape.type_name
    where = path or "request"
    expected = _JSON_TYPES.get(kind)
    if expected is not None and not _has_json_type(value, expected[0]):
        errors.append(
            f"Value {_show(value)} at '{where}' failed to satisfy constraint: Member must be {expected[1]}"
        )
        return value
    if kind == "structure":
        out: dict[str, Any] = {}
        for name in shape.required_members:
            if value.get(name) is None:
                errors.append(
                    f"Value null at '{_member_path(path, name)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        for name, member_value in value.items():
            member = shape.members.get(name)
            if member is None:
                # AWS ignores unknown members of JSON-protocol requests; so do we.
                continue
            if member_value is None:
                continue
            out[name] = validate_and_decode(member, member_value, _member_path(path, name), errors)
        return out
    if kind == "list":
        _check_length(value, meta, where, errors)
        return [
            validate_and_decode(shape.member, item, f"{where}.{i + 1}.member", errors)
            for i, item in enumerate(value)
        ]
    if kind == "map":
        return {k: validate_and_decode(shape.value, v, f"{where}.{k}", errors) for k, v in value.items()}
    if kind == "string":
        _check_length(value, meta, where, errors)
        pattern = meta.get("pattern")
        compiled = _compile_pattern(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(value):
            errors.append(
                f"Value '{_show(value)}' at '{where}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
        enum = meta.get("enum")
        if enum and value not in enum:
            errors.append(
                f"Value '{_show(value)}' at '{where}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(enum)}]"
            )
        return value
    if kind in ("integer", "long"):
        _check_bounds(value, str(value), meta, where, errors, "value")
        return value
    if kind == "blob":
        if not isinstance(value, str):
            errors.append(
                f"Value at '{where}' failed to satisfy constraint: Member must be base64-encoded bytes"
            )
            return value
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise AwsError("SerializationException", f"Value at '{where}' is not valid base64") from None
        _check_length(data, meta, where, errors)
        return data
    return value


_UNICODE_CLASSES = {"L": r"\w", "N": r"\d", "Z": r"\s"}


@functools.lru_cache(maxsize=512)
def _compile_pattern(pattern: str) -> re.Pattern | None:
    """botocore's patterns are Java regexes; map \\p{..} classes to (looser) Python ones, skip the rest."""
    translated = re.sub(r"\\p\{(\w+)\}", lambda m: _UNICODE_CLASSES.get(m.group(1)[:1], r"\w"), pattern)
    try:
        return re.compile(translated, flags=re.DOTALL)
    except re.error:
        return None


def _check_length(value: Any, meta: dict, where: str, errors: list[str]) -> None:
    """A string's, list's or blob's length against the shape's min/max (a blob is not shown)."""
    shown = _show(value) if isinstance(value, str) else "..."
    _check_bounds(len(value), shown, meta, where, errors, "length")


def _check_bounds(measured: int, shown: str, meta: dict, where: str, errors: list[str], what: str) -> None:
    """``measured`` (a number's value or a length) against the shape's min/max, in AWS's words."""
    if "min" in meta and measured < meta["min"]:
        errors.append(
            f"Value '{shown}' at '{where}' failed to satisfy constraint: "
            f"Member must have {what} greater than or equal to {meta['min']}"
        )
    if "max" in meta and measured > meta["max"]:
        errors.append(
            f"Value '{shown}' at '{where}' failed to satisfy constraint: "
            f"Member must have {what} less than or equal to {meta['max']}"
        )


def to_json(value: Any) -> bytes:
    """Serialise a response the way the JSON protocol expects (bytes → base64, datetime → epoch seconds)."""

    def default(obj: Any) -> Any:
        if isinstance(obj, bytes | bytearray):
            return base64.b64encode(obj).decode("ascii")
        if isinstance(obj, datetime):
            return obj.timestamp()
        raise TypeError(f"cannot serialise {type(obj).__name__} in a JSON-protocol response")

    return json.dumps(value, default=default, separators=(",", ":")).encode("utf-8")

"""The companion: the public endpoint that serves Firehose (and other registered services), proxies the rest.

Run as ``python -m localdev.aws.gateway --port 4566 --moto-port 4567 --state-dir .local/aws`` (the
launcher in :mod:`localdev.aws.endpoint` does this). A request goes to a registered handler when its
``X-Amz-Target`` prefix belongs to one (or, lacking a target, when its SigV4 credential scope names the
handler's service); everything else is forwarded to moto byte for byte, streaming both ways, so S3 uploads of
any size, chunked and aws-chunked bodies and moto's own routing all behave as if the client talked to moto.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localdev.aws.base import DEFAULT_REGION, AwsError, CompanionContext, ServiceHandler, to_json

#: Registration point: SigV4 signing name → "module:Class" of a :class:`ServiceHandler`. A module that does
#: not exist yet is skipped (its service then falls through to moto); one that fails to import stops the
#: companion, so a broken handler is never silently replaced by moto.
SERVICE_HANDLERS: dict[str, str] = {
    "firehose": "localdev.aws.firehose:FirehoseHandler",
    "kinesisanalytics": "localdev.aws.flink.api:KinesisAnalyticsHandler",
}

#: Headers that describe one hop, not the message: never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)

#: Bodies up to this size are read whole before forwarding, so a request can be replayed once on a fresh
#: upstream connection if a kept-alive one turns out to be dead; larger bodies stream and are not replayed.
REPLAYABLE_BODY_LIMIT = 1 << 20
COPY_CHUNK = 256 * 1024
_CREDENTIAL_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")

log = logging.getLogger("local_aws.gateway")


class ClientGone(Exception):
    """The client hung up in the middle of its request body; there is nobody left to answer."""


def load_handlers(context_for: Any, registry: dict[str, str] | None = None) -> dict[str, ServiceHandler]:
    """Instantiate each registered handler whose module exists; ``context_for(name)`` makes contexts."""
    handlers: dict[str, ServiceHandler] = {}
    for signing_name, target in (registry or SERVICE_HANDLERS).items():
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                log.info("no handler module %s for %s; its requests go to moto", module_name, signing_name)
                continue
            raise
        cls = getattr(module, class_name, None)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, ServiceHandler)):
            raise RuntimeError(f"{target} (registered for {signing_name!r}) is not a ServiceHandler subclass")
        if cls.signing_name != signing_name:
            raise RuntimeError(
                f"{target} declares signing_name={cls.signing_name!r} but is registered as {signing_name!r}"
            )
        handlers[signing_name] = cls(context_for(signing_name))
    return handlers


class GatewayServer(ThreadingHTTPServer):
    """Threaded HTTP server holding the handlers and the upstream (moto) address."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], moto_address: tuple[str, int]):
        super().__init__(address, GatewayRequestHandler)
        self.moto_address = moto_address
        self.handlers: dict[str, ServiceHandler] = {}
        self.by_target: dict[str, ServiceHandler] = {}
        self.ready = False
        self.started_at = time.time()
        self._local = threading.local()
        self.access_log = os.environ.get("LOCAL_AWS_ACCESS_LOG", "") not in ("", "0", "false")

    def set_handlers(self, handlers: dict[str, ServiceHandler]) -> None:
        self.handlers = handlers
        self.by_target = {prefix: h for h in handlers.values() for prefix in h.target_prefixes}

    def upstream(self, fresh: bool = False) -> http.client.HTTPConnection:
        """This thread's connection to moto (reused while moto keeps it open)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(*self.moto_address, timeout=300)
            self._local.conn = conn
        return conn


class GatewayRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: GatewayServer
    # Headers and body go out in separate writes; with Nagle on, the body waits for the client's delayed
    # ACK (~40 ms a request).
    disable_nagle_algorithm = True
    # A slow client must not pin a thread forever.
    timeout = 600

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        if self.server.access_log:
            log.info("%s %s", self.address_string(), format % args)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionResetError, BrokenPipeError, TimeoutError):
            self.close_connection = True

    # Every method goes through the same router.
    def do_GET(self) -> None:
        self._route()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    # -- routing -----------------------------------------------------------------------------------------
    def _route(self) -> None:
        try:
            self._dispatch()
        except AwsError as exc:  # a malformed request (e.g. a bad Content-Length): answer, then hang up
            self.server.upstream(fresh=True)  # it may hold half a forwarded request
            self.close_connection = True
            self._json_error(exc, str(uuid.uuid4()))
        except ClientGone as exc:
            self.server.upstream(fresh=True)
            log.info("%s %s: %s", self.command, self.path, exc)
            self.close_connection = True

    def _dispatch(self) -> None:
        if self.path.startswith("/_companion/"):
            self._debug_route()
            return
        target = self.headers.get("X-Amz-Target", "")
        prefix = target.split(".", 1)[0] if target else ""
        handler = self.server.by_target.get(prefix) if prefix else None
        region, signing = self._credential_scope()
        if handler is None and not target and signing in self.server.handlers:
            self._read_body()
            self._json_error(
                AwsError("MissingActionException", f"Missing X-Amz-Target header for service {signing!r}"),
                str(uuid.uuid4()),
            )
            return
        if handler is None:
            self._proxy()
            return
        self._serve_json(handler, target.split(".", 1)[1] if "." in target else "", region)

    def _credential_scope(self) -> tuple[str, str]:
        match = _CREDENTIAL_RE.search(self.headers.get("Authorization", ""))
        if match:
            return match.group(1), match.group(2)
        return DEFAULT_REGION, ""

    # -- companion services ------------------------------------------------------------------------------
    def _serve_json(self, handler: ServiceHandler, operation: str, region: str) -> None:
        request_id = str(uuid.uuid4())
        body = self._read_body()
        started = time.perf_counter()
        try:
            result = handler.dispatch(operation, body, region, request_id, dict(self.headers.items()))
        except AwsError as exc:
            if exc.status >= 500:
                log.error("%s %s failed: %s", handler.signing_name, operation, exc)
            self._json_error(exc, request_id)
            return
        except Exception as exc:  # a bug in a handler: log it whole, answer like AWS's InternalFailure
            log.exception("%s %s raised", handler.signing_name, operation)
            self._json_error(AwsError("InternalFailure", f"{type(exc).__name__}: {exc}", 500), request_id)
            return
        payload = to_json(result)
        if self.server.access_log:
            log.info("%s.%s %.1f ms", handler.signing_name, operation, (time.perf_counter() - started) * 1000)
        self._send_simple(200, payload, "application/x-amz-json-1.1", {"x-amzn-RequestId": request_id})

    def _json_error(self, exc: AwsError, request_id: str) -> None:
        self._send_simple(
            exc.status,
            to_json(exc.body()),
            "application/x-amz-json-1.1",
            {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": exc.code},
        )

    def _debug_route(self) -> None:
        parts = urlsplit(self.path)
        self._read_body()
        rest = parts.path[len("/_companion/") :].strip("/")
        if rest == "health":
            status, body = (
                200,
                {
                    "status": "ok" if self.server.ready else "starting",
                    "ready": self.server.ready,
                    "pid": os.getpid(),
                    "moto": "http://{}:{}".format(*self.server.moto_address),
                    "services": sorted(self.server.handlers),
                    "uptime_seconds": round(time.time() - self.server.started_at, 3),
                },
            )
        else:
            service, _, sub = rest.partition("/")
            handler = self.server.handlers.get(service)
            if handler is None:
                status, body = 404, {"error": f"no companion route {parts.path!r}"}
            else:
                try:
                    status, body = handler.debug(self.command, sub, parse_qs(parts.query))
                except Exception as exc:
                    log.exception("debug route %s failed", parts.path)
                    status, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._send_simple(status, json.dumps(body, default=str).encode(), "application/json", {})

    def _send_simple(self, status: int, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # -- request bodies ----------------------------------------------------------------------------------
    def _is_chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            return 0
        try:
            length = int(raw)
        except ValueError:
            raise AwsError("BadRequest", f"Content-Length {raw!r} is not an integer") from None
        if length < 0:
            raise AwsError("BadRequest", f"Content-Length {raw!r} is negative")
        return length

    def _iter_body(self):
        """Yield the request body as it arrives, decoding HTTP chunked transfer encoding."""
        if self._is_chunked():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ClientGone("client closed the connection inside a chunked body")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise AwsError("BadRequest", f"malformed chunk size line {line[:40]!r}") from None
                if size == 0:
                    # Trailer section: read up to the blank line that ends the message.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    piece = self.rfile.read(min(remaining, COPY_CHUNK))
                    if not piece:
                        raise ClientGone("client closed the connection inside a chunk")
                    remaining -= len(piece)
                    yield piece
                self.rfile.readline(3)  # CRLF after the chunk data
        else:
            remaining = self._content_length()
            while remaining:
                piece = self.rfile.read(min(remaining, COPY_CHUNK))
                if not piece:
                    raise ClientGone("client closed the connection before sending the whole body")
                remaining -= len(piece)
                yield piece

    def _read_body(self) -> bytes:
        return b"".join(self._iter_body())

    # -- proxy to moto -----------------------------------------------------------------------------------
    def _proxy(self) -> None:
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if not any(k.lower() == "host" for k, _ in headers):
            host, port = self.server.moto_address
            headers.append(("Host", f"{host}:{port}"))
        chunked = self._is_chunked()
        small = not chunked and self._content_length() <= REPLAYABLE_BODY_LIMIT
        body = self._read_body() if small else None
        try:
            response = self._send_upstream(headers, body, chunked)
        except (OSError, http.client.HTTPException) as exc:
            log.error("moto unreachable for %s %s: %s", self.command, self.path, exc)
            self.close_connection = True
            message = f"local_aws gateway: moto at {self.server.moto_address} is unreachable: {exc}"
            self._send_simple(502, json.dumps({"message": message}).encode(), "application/json", {})
            return
        try:
            self._relay_response(response)
        finally:
            # A response that did not end cleanly leaves the upstream connection unusable.
            if not response.isclosed():
                self.server.upstream(fresh=True)
            response.close()

    def _send_upstream(
        self, headers: list[tuple[str, str]], body: bytes | None, chunked: bool
    ) -> http.client.HTTPResponse:
        # A streamed body cannot be replayed, so it never risks a kept-alive connection that may be stale.
        attempts = 2 if body is not None else 1
        for attempt in range(attempts):
            conn = self.server.upstream(fresh=attempt > 0 or body is None)
            reused = conn.sock is not None
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if body is not None:
                    conn.endheaders(body or None)
                elif chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                    conn.endheaders()
                    for piece in self._iter_body():
                        conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
                    conn.send(b"0\r\n\r\n")
                else:
                    conn.endheaders()
                    for piece in self._iter_body():
                        conn.send(piece)
                return conn.getresponse()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                conn.close()
                if not reused or attempt + 1 >= attempts:
                    raise
        raise AssertionError("unreachable")

    def _relay_response(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        no_body = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        # Without a length the body ends with the upstream's: chunk it for HTTP/1.1, else close after it.
        chunked_out = not no_body and length is None and self.request_version >= "HTTP/1.1"
        if not no_body and length is None and not chunked_out:
            self.close_connection = True
        if chunked_out:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if no_body:
            return
        while True:
            piece = response.read(COPY_CHUNK)
            if not piece:
                break
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked_out else piece)
        if chunked_out:
            self.wfile.write(b"0\r\n\r\n")


# -- process entry point ------------------------------------------------------------------------------------


def _configure_logging(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    level = os.environ.get("LOCAL_AWS_LOG_LEVEL", "INFO").upper()
    handler = logging.FileHandler(state_dir / "companion.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def serve(host: str, port: int, moto_port: int, state_dir: Path) -> int:
    """Run the companion until SIGTERM/SIGINT; handlers flush before the process exits."""
    _configure_logging(state_dir)
    endpoint_url = f"http://{host}:{port}"
    moto_url = f"http://{host}:{moto_port}"
    try:
        server = GatewayServer((host, port), (host, moto_port))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        print(f"local_aws companion: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 3

    def context_for(signing_name: str) -> CompanionContext:
        return CompanionContext(
            state_dir=state_dir / "services" / signing_name,
            moto_url=moto_url,
            endpoint_url=endpoint_url,
            logger=logging.getLogger(f"local_aws.{signing_name}"),
        )

    handlers = load_handlers(context_for)
    server.set_handlers(handlers)

    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            log.info("signal %d: shutting down", signum)
            threading.Thread(target=server.shutdown, name="shutdown", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http")
    serve_thread.start()
    log.info(
        "companion listening on %s, proxying to moto at %s, services %s",
        endpoint_url,
        moto_url,
        sorted(handlers),
    )
    try:
        for handler in handlers.values():
            handler.context.state_dir.mkdir(parents=True, exist_ok=True)
            handler.start()
        server.ready = True
        while serve_thread.is_alive():
            serve_thread.join(0.5)
    finally:
        for handler in handlers.values():
            try:
                handler.stop()
            except Exception:
                log.exception("stopping %s failed", handler.signing_name)
        server.server_close()
        log.info("companion stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--moto-port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    socket.setdefaulttimeout(None)
    return serve(args.host, args.port, args.moto_port, args.state_dir.resolve())


if __name__ == "__main__":
    sys.exit(main())

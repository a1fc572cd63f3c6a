"""The gateway in-process against a fake upstream: exact forwarding, streaming both ways, handler routing."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from localdev.aws.base import AwsError, CompanionContext, ServiceHandler, ServiceRequest
from localdev.aws.gateway import GatewayServer, load_handlers


class FakeUpstream(BaseHTTPRequestHandler):
    """Echoes what it received; a few paths answer in the framings moto's werkzeug server may use."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            for i in range(3):
                piece = f"part{i};".encode() * 1000
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True
            return
        if self.path == "/until-close":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"x" * 100_000)
            self.close_connection = True
            return
        self._echo()

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            body = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(length)
        payload = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "sha256": hashlib.sha256(body).hexdigest(),
                "length": len(body),
            }
        ).encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Multi", "a")
        self.send_header("X-Multi", "b")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_POST = do_PUT = do_DELETE = _echo

    def do_HEAD(self) -> None:
        self._echo()


class EchoHandler(ServiceHandler):
    signing_name = "firehose"
    target_prefixes = ("Firehose_20150804",)
    botocore_service = "firehose"

    def ListDeliveryStreams(self, request: ServiceRequest) -> dict:
        return {"DeliveryStreamNames": [request.region], "HasMoreDeliveryStreams": False}

    def DescribeDeliveryStream(self, request: ServiceRequest) -> dict:
        raise AwsError("ResourceNotFoundException", f"no {request.params['DeliveryStreamName']}")


class MisnamedHandler(EchoHandler):
    signing_name = "kinesisanalytics"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), FakeUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    server = GatewayServer(("127.0.0.1", 0), ("127.0.0.1", upstream.server_address[1]))
    state = Path(tmp_path_factory.mktemp("gw"))
    handlers = load_handlers(
        lambda name: CompanionContext(state / name, "http://unused", "http://unused", logging.getLogger()),
        {"firehose": f"{__name__}:EchoHandler", "nothere": "localdev.aws.no_such_module:Handler"},
    )
    server.set_handlers(handlers)
    server.ready = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    upstream.shutdown()


def request(port, method, path, body=None, headers=None, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp, data


def test_request_is_forwarded_verbatim(gateway):
    body = os.urandom(3 * 1024 * 1024 + 5)  # above the replay limit: streamed, not buffered
    resp, data = request(
        gateway,
        "PUT",
        "/bucket/key%20with%20space?partNumber=2&uploadId=x",
        body=body,
        headers={"x-amz-meta-my_key": "v", "X-Custom": "1", "Connection": "keep-alive", "Host": "example:9"},
    )
    echo = json.loads(data)
    assert resp.status == 201
    assert echo["path"] == "/bucket/key%20with%20space?partNumber=2&uploadId=x"
    assert echo["length"] == len(body) and echo["sha256"] == hashlib.sha256(body).hexdigest()
    sent = dict((k.lower(), v) for k, v in echo["headers"])
    assert sent["x-amz-meta-my_key"] == "v" and sent["x-custom"] == "1" and sent["host"] == "example:9"
    assert "keep-alive" not in sent.get("connection", "")  # hop-by-hop headers are not forwarded
    assert resp.getheader("X-Multi") == "a, b"  # repeated response headers survive


def test_chunked_request_is_rechunked(gateway):
    pieces = [os.urandom(1000), os.urandom(70_000)]
    conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=30)
    conn.putrequest("POST", "/echo")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for piece in pieces:
        conn.send(b"%x\r\n%b\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    echo = json.loads(conn.getresponse().read())
    conn.close()
    assert echo["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_responses_without_length_stream_back(gateway):
    conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=30)
    resp, data = request(gateway, "GET", "/chunked", conn=conn)
    assert data == b"".join(f"part{i};".encode() * 1000 for i in range(3))
    assert resp.getheader("Transfer-Encoding") == "chunked"
    # The client connection stays usable although the upstream closed its own.
    resp, data = request(gateway, "GET", "/until-close", conn=conn)
    assert data == b"x" * 100_000
    resp, data = request(gateway, "HEAD", "/head", conn=conn)
    assert resp.status == 201 and data == b"" and int(resp.getheader("Content-Length")) > 0
    conn.close()


def test_json_services_route_by_target_and_scope(gateway):
    scope = {"Authorization": "AWS4-HMAC-SHA256 Credential=AK/20260101/eu-west-1/firehose/aws4_request, X"}
    resp, data = request(
        gateway, "POST", "/", b"{}", {"X-Amz-Target": "Firehose_20150804.ListDeliveryStreams", **scope}
    )
    assert resp.status == 200 and json.loads(data)["DeliveryStreamNames"] == ["eu-west-1"]
    assert resp.getheader("Content-Type") == "application/x-amz-json-1.1"
    resp, data = request(
        gateway,
        "POST",
        "/",
        b'{"DeliveryStreamName": "x"}',
        {"X-Amz-Target": "Firehose_20150804.DescribeDeliveryStream"},
    )
    assert resp.status == 400 and json.loads(data) == {
        "__type": "ResourceNotFoundException",
        "message": "no x",
    }
    resp, data = request(gateway, "POST", "/", b"{}", scope)  # firehose scope but no target
    assert resp.status == 400 and json.loads(data)["__type"] == "MissingActionException"
    resp, data = request(
        gateway, "POST", "/", b"not json", {"X-Amz-Target": "Firehose_20150804.ListDeliveryStreams"}
    )
    assert resp.status == 400 and json.loads(data)["__type"] == "SerializationException"
    # Another service's target goes to the upstream untouched.
    resp, data = request(gateway, "POST", "/", b"{}", {"X-Amz-Target": "Kinesis_20131202.ListStreams"})
    assert resp.status == 201 and json.loads(data)["method"] == "POST"


def test_registry_rules(tmp_path):
    def context(name):
        return CompanionContext(tmp_path / name, "http://unused", "http://unused", logging.getLogger())

    assert load_handlers(context, {"nothere": "localdev.aws.no_such_module:Handler"}) == {}
    with pytest.raises(RuntimeError, match="declares signing_name='kinesisanalytics'"):
        load_handlers(context, {"firehose": f"{__name__}:MisnamedHandler"})
    with pytest.raises(RuntimeError, match="not a ServiceHandler"):
        load_handlers(context, {"firehose": f"{__name__}:FakeUpstream"})

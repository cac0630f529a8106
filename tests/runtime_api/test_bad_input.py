"""Bad input gets a clear error and the server keeps serving: malformed HTTP, oversized headers and
bodies, unknown paths, callers that vanish, and property-based request shapes (hypothesis) against
both the Invoke API and an environment's Runtime API."""

from __future__ import annotations

import json
import socket
import sys

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import AWSLAMBDARIC, threaded_server, write_function
from runtime_api import FunctionConfig

INVOKE = "/2015-03-31/functions/echo/invocations"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    code = write_function(tmp_path_factory.mktemp("echo"), "def handler(e, c):\n    return e\n")
    hold = FunctionConfig(name="hold", code=str(code), runtime=[sys.executable, "-c", "import time; time.sleep(10**6)"],
                          timeout=900)
    echo = FunctionConfig(name="echo", code=str(code), handler="app.handler", runtime=[*AWSLAMBDARIC, "app.handler"])
    with threaded_server(echo, hold) as handle:
        # An environment whose runtime never calls the Runtime API itself: the tests do.
        handle.invoke("hold", invocation_type="Event")
        yield handle


def exchange(port: int, data: bytes, *, read_timeout: float = 10.0) -> tuple[int | None, dict, bytes]:
    """Send raw bytes; return (status, headers, body) of the first response, or None if the server
    closed without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may refuse the rest of an oversized request and close early
        client = h11.Connection(h11.CLIENT)
        method = "HEAD" if data.startswith(b"HEAD ") else "GET"  # a HEAD response has no body
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        head, body = None, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                client.receive_data(chunk)
                if not chunk and head is None:
                    return None, {}, b""
                continue
            if type(event) is h11.InformationalResponse:
                continue
            if type(event) is h11.Response:
                head = event
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) in (h11.EndOfMessage, h11.ConnectionClosed):
                break
        return head.status_code, {k.decode(): v.decode() for k, v in head.headers}, body


def invoke_ok(server) -> None:
    """The server still serves a normal invocation."""
    result = server.invoke("echo", b'{"still": "serving"}')
    assert json.loads(result.payload) == {"still": "serving"}


def runtime_api_port(server) -> int:
    (env,) = server.server.functions["hold"].environments
    return int(env.address.rsplit(":", 1)[1])


@pytest.mark.parametrize("data, status", [
    (b"garbage\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
    (b"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (2 << 20) + b"\r\n\r\n", 431),
    (b"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}", 400),  # body cut short
])
@pytest.mark.parametrize("target", ["invoke", "runtime"])
def test_malformed_http_gets_a_clear_error(server, data, status, target):
    port = server.server.port if target == "invoke" else runtime_api_port(server)
    # A path whose handler reads the body: the Invoke API's, or an /error post to the Runtime API.
    path = INVOKE if target == "invoke" else "/2018-06-01/runtime/invocation/unknown-id/error"
    got, _, _ = exchange(port, data.replace(b"{path}", path.encode()))
    assert got == status
    invoke_ok(server)


@pytest.mark.parametrize("method, path, error_type", [
    ("GET", INVOKE, "UnknownOperationException"),
    ("POST", "/", "UnknownOperationException"),
    ("POST", "/2015-03-31/functions/echo/invocations/", "UnknownOperationException"),
    ("POST", "/2015-03-31/functions/no_such_fn/invocations", "ResourceNotFoundException"),
    ("POST", "/2015-03-31/functions/bad name!/invocations", "ValidationException"),
    ("POST", INVOKE + "?Qualifier=7", "ResourceNotFoundException"),
])
def test_unknown_operations_and_functions(server, method, path, error_type):
    status, headers, body = exchange(server.server.port, f"{method} {path.replace(' ', '%20')} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    assert headers["x-amzn-errortype"] == error_type
    assert status in (400, 404)
    assert json.loads(body)["message"]


def test_an_oversized_payload_is_refused_and_nothing_runs(server):
    payload = b'"' + b"x" * (6 * 1024 * 1024) + b'"'
    status, headers, body = exchange(
        server.server.port,
        f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload,
    )
    assert (status, headers["x-amzn-errortype"]) == (413, "RequestTooLargeException")
    invoke_ok(server)


def test_a_caller_that_disconnects_mid_invocation(server):
    with socket.create_connection(("127.0.0.1", server.server.port)) as sock:
        sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode())
    invoke_ok(server)
    invoke_ok(server)


def test_expect_100_continue_is_answered(server):
    body = b'{"big": "' + b"y" * 100_000 + b'"}'
    with socket.create_connection(("127.0.0.1", server.server.port), timeout=10) as sock:
        sock.sendall(f"POST {INVOKE} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        assert sock.recv(64).startswith(b"HTTP/1.1 100 ")  # before any of the body was sent
        sock.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < len(body):
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(body)


methods = st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "FOO"])
segments = st.sampled_from(["2018-06-01", "2015-03-31", "runtime", "invocation", "next", "response", "error",
                            "init", "restore", "functions", "echo", "invocations", "ping", "", "..", "%2F", "x" * 300])
paths = st.lists(segments, max_size=7).map(lambda parts: "/" + "/".join(parts))
header_names = st.sampled_from(["Content-Type", "X-Amz-Invocation-Type", "X-Amz-Log-Type", "X-Amz-Client-Context",
                                "Lambda-Runtime-Function-Response-Mode", "Lambda-Runtime-Function-Error-Type",
                                "X-Amzn-Trace-Id", "X-Random"])
header_values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=40)
bodies = st.one_of(st.binary(max_size=2000), st.just(b'{"a": 1}'), st.just(b""))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, headers=st.lists(st.tuples(header_names, header_values), max_size=4), body=bodies,
       target=st.sampled_from(["invoke", "runtime"]))
def test_any_request_shape_gets_a_well_formed_answer(server, method, path, headers, body, target):
    if target == "runtime" and method == "GET" and path == "/2018-06-01/runtime/invocation/next":
        return  # a legitimate long poll: it waits for an invocation by design
    port = server.server.port if target == "invoke" else runtime_api_port(server)
    if target == "invoke" and path == INVOKE and method == "POST":
        headers = [(k, v) for k, v in headers if k != "X-Amz-Invocation-Type"]  # keep the fuzz fast
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    status, _, _ = exchange(port, request)
    assert status is not None and 200 <= status < 500, status


def test_the_server_survived_the_fuzzing(server):
    invoke_ok(server)

"""Response streaming end to end: a generator handler run by our bootstrap, behind lambdalet's own
server (Runtime API + Invoke API), and a caller that sees the first chunk arrive while the handler
is still paused before its second one; a mid-stream error reaches the caller as trailers."""

import base64
import http.client
import json
import socket
import textwrap
from urllib.parse import urlsplit

import pytest

from runtime_api import FunctionConfig, LambdaletThread, ServerConfig

HANDLER = textwrap.dedent('''
    import os, socket

    def _wait_for_release():
        # The test releases us by sending one byte over this connection: an event, not a sleep.
        with socket.create_connection(("127.0.0.1", int(os.environ["GATE_PORT"]))) as s:
            s.recv(1)

    def handler(event, context):
        yield "first\\n"
        _wait_for_release()
        yield b"second\\n"
        if event.get("fail"):
            raise ValueError("broke mid-stream")
        yield "third\\n"
''')


class Gate:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(60)
        self.port = self.sock.getsockname()[1]

    def release(self):
        conn, _ = self.sock.accept()
        conn.sendall(b"x")
        conn.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def gate():
    g = Gate()
    yield g
    g.close()


@pytest.fixture
def server(tmp_path, gate):
    (tmp_path / "app.py").write_text(HANDLER)
    function = FunctionConfig(name="stream", code=str(tmp_path), handler="app.handler",
                              env={"GATE_PORT": str(gate.port)})
    with LambdaletThread(ServerConfig(port=0, function=[function])) as handle:
        yield handle


def open_invoke(server, payload):
    url = urlsplit(server.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("POST", "/2015-03-31/functions/stream/invocations", body=json.dumps(payload))
    return conn, conn.getresponse()


def test_chunks_reach_the_caller_before_the_handler_finishes(server, gate):
    conn, response = open_invoke(server, {})
    try:
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        first = response.read1(1024)  # arrives while the handler waits at the gate
        assert first == b"first\n"
        gate.release()
        assert response.read() == b"second\nthird\n"
    finally:
        conn.close()


def test_mid_stream_error_reaches_the_caller_as_trailers(server, gate):
    conn, response = open_invoke(server, {"fail": True})
    try:
        assert response.read1(1024) == b"first\n"
        gate.release()
        # http.client drops trailers: read the rest of the chunked body by hand, up to the blank
        # line that ends the trailer section.
        raw = b""
        while not (b"\r\n0\r\n" in raw and raw.endswith(b"\r\n\r\n")):
            data = response.fp.read1(65536)
            assert data, f"connection closed early: {raw!r}"
            raw += data
    finally:
        conn.close()
    assert b"second\n" in raw
    trailer_block = raw[raw.index(b"\r\n0\r\n") + 5:]
    trailers = dict(line.split(": ", 1) for line in trailer_block.decode().split("\r\n") if ": " in line)
    assert trailers["Lambda-Runtime-Function-Error-Type"] == "ValueError"
    error = json.loads(base64.b64decode(trailers["Lambda-Runtime-Function-Error-Body"]))
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "broke mid-stream")

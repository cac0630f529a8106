"""Response streaming: what the runtime streams reaches the caller as it arrives, not buffered, and a
mid-stream error reaches the caller as trailers. The runtime here is a small scripted one using only
http.client, so the test controls every byte and every pause (released through a Gate)."""

from __future__ import annotations

import base64
import json
import sys

import h11
import pytest
import trio

from helpers import INVOKE, Gate, HttpClient, running_server
from runtime_api import FunctionConfig

STREAMING_RUNTIME = Gate.handler_snippet + r'''
import http.client, json, os, types

api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    response = conn.getresponse()
    event = json.loads(response.read())
    request_id = response.getheader("Lambda-Runtime-Aws-Request-Id")
    context = types.SimpleNamespace(aws_request_id=request_id)
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{request_id}/response")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    conn.endheaders()
    conn.send(b"6\r\nfirst\n\r\n")
    wait_at_gate(context)
    conn.send(b"7\r\nsecond\n\r\n")
    if event.get("fail"):
        conn.send(b"0\r\nLambda-Runtime-Function-Error-Type: Function.StreamErr\r\n"
                  b"Lambda-Runtime-Function-Error-Body: eyJlcnJvclR5cGUiOiJTdHJlYW1FcnIifQ==\r\n\r\n")
    else:
        conn.send(b"0\r\n\r\n")
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 202, reply.status
'''


@pytest.fixture
def streaming_function(tmp_path, gate):
    script = tmp_path / "runtime.py"
    script.write_text(STREAMING_RUNTIME)
    return FunctionConfig(name="stream", code=str(tmp_path), runtime=[sys.executable, str(script)],
                          env={"GATE_PORT": str(gate.port)})


async def test_a_stream_reaches_the_caller_as_it_arrives(streaming_function, gate):
    async with running_server(streaming_function) as server:
        client = await HttpClient.connect(server.port)
        await client.send("POST", INVOKE.format(name="stream"), b"{}")
        head = await client.next_event()
        assert head.status_code == 200
        first = await client.next_event()
        assert type(first) is h11.Data and first.data == b"first\n"
        # The runtime is still held at the gate: the first chunk came before the stream ended.
        await gate.wait_arrivals(1)
        await gate.release_all()
        rest = b""
        while type(event := await client.next_event()) is h11.Data:
            rest += event.data
        assert rest == b"second\n"
        assert type(event) is h11.EndOfMessage and list(event.headers) == []
        assert dict(head.headers).get(b"x-amz-function-error") is None
        await client.aclose()


async def test_a_mid_stream_error_reaches_the_caller_as_trailers(streaming_function, gate):
    async with running_server(streaming_function) as server:
        client = await HttpClient.connect(server.port)
        await client.send("POST", INVOKE.format(name="stream"), b'{"fail": true}')
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gate.wait_arrivals, 1)
        await gate.release_all()
        status, headers, body, trailers = await client.response()
        assert (status, body) == (200, b"first\nsecond\n")
        assert trailers["lambda-runtime-function-error-type"] == "Function.StreamErr"
        assert json.loads(base64.b64decode(trailers["lambda-runtime-function-error-body"])) == {"errorType": "StreamErr"}
        await client.aclose()


async def test_a_caller_that_leaves_mid_stream_does_not_stop_the_server(streaming_function, gate):
    async with running_server(streaming_function) as server:
        client = await HttpClient.connect(server.port)
        await client.send("POST", INVOKE.format(name="stream"), b"{}")
        await client.next_event()
        await client.next_event()  # the first chunk
        await client.aclose()  # gone before the stream ends
        await gate.wait_arrivals(1)
        await gate.release_all()
        # The same environment serves the next caller once its runtime asks for more.
        async with trio.open_nursery() as nursery:
            results = []

            async def invoke():
                results.append(await server.invoke("stream"))

            nursery.start_soon(invoke)
            await gate.wait_arrivals(1)
            await gate.release_all()
        assert results[0].payload == b"first\nsecond\n"
        assert len(server.functions["stream"].environments) == 1

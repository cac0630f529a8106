"""Debugging a Python function (runtime_api/debug.py): its runtime waits for a debugger, a real
debugpy driven by a Debug Adapter Protocol client here, before the handler runs, and no deadline
ends an invocation while debugging (the protocol's rule, runtime_api/protocol.py)."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from helpers import CapturedLog, Gate, free_port, write_function
from runtime_api import Server, ServerConfig
from runtime_api.config import ConfigError, FunctionConfig
from runtime_api.debug import DEBUG_ENV, debug_environment, debugpy_location
from runtime_api.protocol import DeadlinePassed, DeadlineSuspended, EnvironmentProtocol, InvocationArrived
from sandbox.isolation import Isolation

pytestmark = pytest.mark.skipif(debugpy_location() is None, reason="debugpy is not installed (pip install debugpy)")


class WatchedLog(CapturedLog):
    """A CapturedLog that says when a line containing `text` has been written."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text_wanted = text
        self.seen = trio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.text_wanted in self.text:
            self.seen.set()


class LogEvent(logging.Handler):
    """Sets a trio Event when the lambdalet logger says something containing `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def attach(port: int) -> trio.SocketStream:
    """A Debug Adapter Protocol client's attach: initialize, attach, and configurationDone once
    debugpy says it is initialized (what VS Code's Remote Attach sends)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    seq = 0

    async def send(command: str, arguments: dict) -> None:
        nonlocal seq
        seq += 1
        body = json.dumps({"seq": seq, "type": "request", "command": command, "arguments": arguments}).encode()
        await stream.send_all(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    await send("initialize", {"adapterID": "lambdalet-test", "clientID": "test"})
    await send("attach", {"justMyCode": False})
    buffer = b""
    while b'"event": "initialized"' not in buffer and b'"event":"initialized"' not in buffer:
        chunk = await stream.receive_some(65536)
        assert chunk, "debugpy closed the connection"
        buffer += chunk
    await send("configurationDone", {})
    return stream


async def test_the_runtime_waits_for_a_debugger_and_no_deadline_ends_the_invocation(tmp_path, gate):
    port = free_port()
    write_function(tmp_path / "fn", Gate.handler_snippet + "\ndef handler(event, context):\n"
                                                          "    return wait_at_gate(context)\n")
    function = FunctionConfig(name="fn", code=str(tmp_path / "fn"), timeout=1, debug_port=port,
                              env={"GATE_PORT": str(gate.port)})
    log = WatchedLog(f"waits for a debugger at 127.0.0.1:{port}")
    suspended = LogEvent("deadlines are suspended while debugging")
    logging.getLogger("lambdalet").addHandler(suspended)
    try:
        async with Server(ServerConfig(port=0, function=[function]), sink=log) as server:
            assert server.functions["fn"].concurrency == 1  # one environment: one debug port
            async with trio.open_nursery() as nursery:
                results = []

                async def invoke():
                    results.append(await server.invoke("fn"))

                nursery.start_soon(invoke)
                await log.seen.wait()
                assert not gate.arrivals  # the handler has not run: no debugger yet
                debugger = await attach(port)
                await gate.wait_arrivals(1)
                await suspended.seen.wait()  # the 1 s timeout passed while the handler waited
                await gate.release_all(b"debugged")
            (result,) = results
            assert result.function_error is None and json.loads(result.payload) == "debugged"
            await debugger.aclose()
    finally:
        logging.getLogger("lambdalet").removeHandler(suspended)


def test_a_deadline_passing_while_debugging_is_a_protocol_rule():
    class Invocation:
        request_id = "r"

    proto = EnvironmentProtocol(debugging=True)
    proto.handle(InvocationArrived(Invocation()))
    assert proto.handle(DeadlinePassed(3.0)) == [DeadlineSuspended(3.0)]
    assert proto.invocation is not None  # not settled, not killed
    plain = EnvironmentProtocol()
    plain.handle(InvocationArrived(Invocation()))
    assert any(type(action).__name__ == "Kill" for action in plain.handle(DeadlinePassed(3.0)))


def test_only_lambdalets_python_runtime_is_debugged_and_not_at_strict(tmp_path):
    with pytest.raises(ConfigError, match="Python functions"):
        debug_environment(FunctionConfig(name="node", runtime=["node", "index.mjs"], debug_port=5678))
    with pytest.raises(ConfigError, match="isolation strict"):
        debug_environment(FunctionConfig(name="fn", isolation=Isolation.STRICT, debug_port=5678))
    with pytest.raises(ConfigError, match="Python functions"):
        debug_environment(FunctionConfig(name="fn", runtime_id="nodejs20.x", debug_port=5678))
    assert debug_environment(FunctionConfig(name="fn", debug_port=5678)) == {
        DEBUG_ENV: f"127.0.0.1:5678:{debugpy_location()}"}

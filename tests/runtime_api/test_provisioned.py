"""Provisioned concurrency: environments initialised when the server starts, told so, kept warm
(never reaped when idle) and replaced when one dies."""

from __future__ import annotations

import json
import os

import trio

from helpers import CapturedLog, Gate, awslambdaric_function, running_server, write_function

HANDLERS = Gate.handler_snippet + '''
import os, sys

INIT_PID = os.getpid()

def info(event, context):
    if event.get("hold"):
        wait_at_gate(context)
    if event.get("exit"):
        sys.exit(1)
    return {"pid": os.getpid(), "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
'''


async def test_provisioned_environments_are_ready_before_the_first_invocation(tmp_path, nursery):
    gate = await Gate().start(nursery)
    write_function(tmp_path, HANDLERS)
    log = CapturedLog()
    config = awslambdaric_function("prov", tmp_path, "app.info", concurrency=3, provisioned=2,
                                   idle_timeout=0.01, env={"GATE_PORT": str(gate.port)})
    async with running_server(config, sink=log) as server:
        function = server.functions["prov"]
        started = {env.pid for env in function.environments}
        assert len(started) == 2 and None not in started  # launched at start-up, before any invocation
        results = []

        async def invoke(payload: bytes) -> None:
            results.append(json.loads((await server.invoke("prov", payload)).payload))

        async with trio.open_nursery() as invocations:
            invocations.start_soon(invoke, b'{"hold": true}')
            invocations.start_soon(invoke, b'{"hold": true}')
            await gate.wait_arrivals(2)
            await gate.release_all()
        assert {r["pid"] for r in results} == started
        assert {r["init_type"] for r in results} == {"provisioned-concurrency"}
        # Idle far longer than the idle timeout: provisioned environments are kept.
        again = json.loads((await server.invoke("prov", b"{}")).payload)
        assert again["pid"] in started
        assert "Init Duration" not in log.text  # their init happened ahead of the invocations


async def test_a_provisioned_environment_that_dies_is_replaced(tmp_path):
    write_function(tmp_path, HANDLERS)
    config = awslambdaric_function("prov", tmp_path, "app.info", concurrency=2, provisioned=1)
    async with running_server(config) as server:
        function = server.functions["prov"]
        (first,) = function.environments
        crashed = await server.invoke("prov", b'{"exit": true}')
        assert json.loads(crashed.payload)["errorType"] == "Runtime.ExitError"
        await first.closed.wait()
        with trio.fail_after(60):  # bounded only so that a missing replacement fails the test
            await function.wait_provisioned()
        (second,) = [env for env in function.environments if env.options.provisioned]
        assert second.pid != first.pid and os.path.exists(f"/proc/{second.pid}")

"""External extensions in `lambdalet serve`: executables of a layer's extensions/, started before
the runtime, registered, given INVOKE per invocation and SHUTDOWN with its reason, failing init or
the invocation as Lambda reports it, killed at the Shutdown deadline. The extensions are the test's
own (extension_programs/: one in Python, one a shell script with curl), in a layer."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from helpers import CapturedLog, Gate, awslambdaric_function, extension_layer, running_server, write_function

HANDLER = Gate.handler_snippet + '''
import os
import signal

if os.environ.get("IGNORE_SIGTERM"):  # a runtime that shuts down gracefully lives until the deadline
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

def handler(event, context):
    if event.get("gate"):
        wait_at_gate(context, "handler")
    if event.get("exit"):
        os._exit(3)
    if event.get("sleep"):
        import time
        time.sleep(event["sleep"])
    return {"request": context.aws_request_id}
'''


def function(tmp_path: Path, *layers: Path, **settings):
    code = write_function(tmp_path / "code", HANDLER)
    env = settings.pop("env", {})
    return awslambdaric_function("fn", code, layers=[str(layer) for layer in layers], isolation="none",
                                 env=env, **settings)


def said(log: CapturedLog, name: str, what: str) -> list[str]:
    """What the extension `name` said of `what` (`event`, `registered`, `subscribed`), in order."""
    return [line.split(" ", 2)[2] for line in log.text.splitlines() if line.startswith(f"{name} {what} ")]


def events(log: CapturedLog, name: str = "recorder") -> list[dict]:
    return [json.loads(text) for text in said(log, name, "event")]


async def test_an_extension_registers_gets_each_invocation_and_shutdown_as_the_server_stops(tmp_path):
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path))
    async with running_server(config, sink=log) as server:
        first = json.loads((await server.invoke("fn")).payload)["request"]
        second = json.loads((await server.invoke("fn")).payload)["request"]
        (env,) = server.functions["fn"].environments
        await env.wait_idle()
        stopping = int(time.time() * 1000)
    stopped = int(time.time() * 1000)
    (registered,) = said(log, "recorder", "registered")
    assert registered == '200 {"functionName":"fn","functionVersion":"$LATEST","handler":"app.handler",' \
                         '"accountId":"123456789012"}'
    assert "EXTENSION\tName: recorder\tState: Ready\tEvents: [INVOKE,SHUTDOWN]" in log.text
    invoke1, invoke2, shutdown = events(log)
    assert [invoke1["requestId"], invoke2["requestId"]] == [first, second]
    assert invoke1["eventType"] == "INVOKE" and invoke1["invokedFunctionArn"].endswith(":function:fn")
    assert invoke1["tracing"]["type"] == "X-Amzn-Trace-Id" and invoke1["deadlineMs"] > stopping - 60_000
    assert shutdown["eventType"] == "SHUTDOWN" and shutdown["shutdownReason"] == "spindown"
    assert stopping + 2000 <= shutdown["deadlineMs"] <= stopped + 2000
    # The extension started before the runtime: its registration precedes the runtime's first START.
    assert log.text.index("recorder registered") < log.text.index(f"START RequestId: {first}")


async def test_a_shell_script_extension_with_curl(tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path, "curl-extension", "curl-extension.sh"))
    async with running_server(config, sink=log) as server:
        request = json.loads((await server.invoke("fn")).payload)["request"]
        await next(iter(server.functions["fn"].environments)).wait_idle()
    invoke, shutdown = [json.loads(text) for text in said(log, "curl-extension", "event")]
    assert invoke["requestId"] == request and shutdown["shutdownReason"] == "spindown"


async def test_work_after_the_response_holds_the_environment_but_not_the_caller(tmp_path, nursery):
    gate = await Gate().start(nursery)
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "gate", "GATE_PORT": str(gate.port)})
    async with running_server(config, sink=log) as server:
        request = json.loads((await server.invoke("fn")).payload)["request"]
        # The caller has its answer while the extension still works on the invocation.
        assert await gate.wait_arrivals(1) == [f"recorder {request}"]
        (env,) = server.functions["fn"].environments
        assert not env.proto.idle and f"REPORT RequestId: {request}" not in log.text
        await gate.release_all()
        await env.wait_idle()
        report = next(line for line in log.text.splitlines() if line.startswith(f"REPORT RequestId: {request}"))
        assert re.search(r"\tPostRuntimeExtensionsDuration: \d+\.\d\d ms\t", report)
        assert len(server.functions["fn"].environments) == 1


async def test_an_extension_still_working_as_the_server_stops_gets_shutdown_once_it_asks(tmp_path, nursery):
    gate = await Gate().start(nursery)
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path),
                      env={"EXT_MODE": "gate", "GATE_PORT": str(gate.port), "EXT_GATE_SHUTDOWN": "1",
                           "IGNORE_SIGTERM": "1"})
    async with running_server(config, sink=log) as server:
        request = json.loads((await server.invoke("fn")).payload)["request"]
        assert await gate.wait_arrivals(1) == [f"recorder {request}"]
        # The runtime outlives the SIGTERM, so the extension's next request ends the invocation's
        # cycle inside the Shutdown phase: that must not end the environment before SHUTDOWN.
        async with trio.open_nursery() as stopping:
            stopping.start_soon(server.functions["fn"].stop)
            await trio.testing.wait_all_tasks_blocked()  # its Shutdown phase has begun
            await gate.release_all()  # the extension is done with the INVOKE, and asks again
            # It works on its SHUTDOWN, still running in its environment, and then finishes.
            assert await gate.wait_arrivals(1) == ["recorder SHUTDOWN"]
            await gate.release_all()
    invoke, shutdown = events(log)
    assert invoke["requestId"] == request and shutdown["shutdownReason"] == "spindown"
    assert said(log, "recorder", "finished") == ["shutdown"]


async def test_an_extension_that_crashes_during_an_invocation_fails_it_and_the_environment_is_replaced(
        tmp_path, nursery):
    gate = await Gate().start(nursery)
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "crash", "GATE_PORT": str(gate.port)})
    async with running_server(config, sink=log) as server:
        failed = await invoke_while_the_handler_waits(server, gate)
        assert failed.function_error == "Unhandled"
        error = json.loads(failed.payload)
        assert error["errorType"] == "Extension.Crash"
        assert error["errorMessage"] == f"RequestId: {failed.request_id} Error: extension recorder crashed: exit status 3"
        assert "Status: error\tError Type: Extension.Crash" in log.text


async def invoke_while_the_handler_waits(server, gate: Gate):
    """An invocation whose handler cannot answer it: it waits at `gate`, released only once the
    caller has its answer (which the extension's failure gives it). The handler's arrival is not
    awaited: the extension fails as it gets INVOKE, and the environment it ends may be stopped
    before the handler reaches the gate, or even starts."""
    result = await server.invoke("fn", b'{"gate": true}')
    await gate.release_all()
    return result


async def test_an_extension_init_error_fails_init(tmp_path):
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "init-error"})
    async with running_server(config, sink=log) as server:
        result = await server.invoke("fn")
    error = json.loads(result.payload)
    assert result.function_error == "Unhandled" and error == {
        "errorType": "Extension.InitError",
        "errorMessage": "Extension recorder failed to initialize: it reported Extension.ConfigInvalid"}
    assert re.search(r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: error\tError Type: "
                     r"Extension.InitError", log.text)


async def test_an_extension_that_exits_before_it_registers_fails_init(tmp_path):
    config = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "no-register"})
    async with running_server(config) as server:
        result = await server.invoke("fn")
    assert json.loads(result.payload) == {
        "errorType": "Extension.InitError",
        "errorMessage": "Extension recorder failed to initialize: it exited before it registered (exit status 2)"}


async def test_an_extension_that_never_registers_fails_init_at_its_timeout_and_the_server_keeps_serving(tmp_path):
    hanging = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "never-register"}, init_timeout=1.0)
    healthy = awslambdaric_function("other", write_function(tmp_path / "other", HANDLER), isolation="none")
    async with running_server(hanging, healthy) as server:
        result = await server.invoke("fn")
        assert json.loads(result.payload)["errorType"] == "Sandbox.Timedout"
        assert (await server.invoke("other")).function_error is None


async def test_an_extension_that_posts_exit_error_fails_the_invocation(tmp_path, nursery):
    gate = await Gate().start(nursery)
    config = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "exit-error", "GATE_PORT": str(gate.port)})
    async with running_server(config) as server:
        failed = await invoke_while_the_handler_waits(server, gate)
    assert json.loads(failed.payload)["errorType"] == "Extension.ExitError"


@pytest.mark.parametrize("cause, reason", [("timeout", "timeout"), ("exit", "failure"), ("idle", "spindown")])
async def test_shutdown_carries_its_reason(tmp_path, cause, reason):
    log = CapturedLog()
    settings = {"timeout": 1.0} if cause == "timeout" else {"idle_timeout": 0.05} if cause == "idle" else {}
    config = function(tmp_path, extension_layer(tmp_path), **settings)
    async with running_server(config, sink=log) as server:
        (fn,) = server.functions.values()
        payload = {"timeout": b'{"sleep": 30}', "exit": b'{"exit": true}', "idle": b"{}"}[cause]
        invoked = int(time.time() * 1000)
        await server.invoke("fn", payload)
        while fn.environments:  # the environment ends: timed out, crashed, or reaped when idle
            await next(iter(fn.environments)).closed.wait()
        ended = int(time.time() * 1000)
    shutdown = events(log)[-1]
    assert shutdown["eventType"] == "SHUTDOWN" and shutdown["shutdownReason"] == reason
    # 2,000 ms after the Shutdown phase began, which was after the invocation and before the end
    assert invoked + 2000 <= shutdown["deadlineMs"] <= ended + 2000


async def test_a_slow_extension_is_killed_at_the_shutdown_deadline(tmp_path):
    log = CapturedLog()
    config = function(tmp_path, extension_layer(tmp_path), env={"EXT_MODE": "slow-shutdown"})
    async with running_server(config, sink=log) as server:
        await server.invoke("fn")
        (env,) = server.functions["fn"].environments
        extension = env.extension_processes["recorder"]
        await env.wait_idle()
    # It had its SHUTDOWN, ignored SIGTERM and did not exit; at the deadline it was killed and reaped.
    assert events(log)[-1]["eventType"] == "SHUTDOWN"
    assert extension.status == -9
    with pytest.raises(ProcessLookupError):
        os.kill(extension.pid, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="isolation standard's mount namespace needs root here")
@pytest.mark.parametrize("isolation", ["standard", "strict"])
async def test_extensions_share_the_runtimes_tmp_and_opt(tmp_path, isolation):
    layer = extension_layer(tmp_path)
    code = write_function(tmp_path / "code", '''
import os
def handler(event, context):
    return {"opt": sorted(os.listdir("/opt/extensions")), "tmp": os.path.exists("/tmp/from-extension")}
''')
    source = (layer / "extensions" / "recorder").read_text()
    (layer / "extensions" / "recorder").write_text(source.replace(
        "if MODE == \"no-register\":", "open('/tmp/from-extension', 'w').close()\nif MODE == \"no-register\":"))
    config = awslambdaric_function("fn", code, layers=[str(layer)], isolation=isolation)
    async with running_server(config) as server:
        result = json.loads((await server.invoke("fn")).payload)
    assert result == {"opt": ["recorder"], "tmp": True}

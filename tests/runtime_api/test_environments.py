"""Execution environments as a user of `lambdalet serve` sees them: warm reuse, concurrency and
429, timeouts that kill the whole process tree, resets, idle reaping, init failures and the
platform log lines (driven through the embedding API with the real awslambdaric as runtime)."""

from __future__ import annotations

import json
import os
import re

import pytest
import trio

from runtime_api import FunctionConfig, ServiceError
from sandbox import host
from helpers import CapturedLog, Gate, awslambdaric_function, running_server, write_function

HANDLERS = Gate.handler_snippet + '''
import os, subprocess, sys, time

def whoami(event, context):
    return {"pid": os.getpid(), "event": event}

def gated(event, context):
    note = wait_at_gate(context)
    return {"pid": os.getpid(), "released": note}

def spawn_and_hang(event, context):
    child = subprocess.Popen(["sleep", "1000"])
    wait_at_gate(context, str(child.pid))
    time.sleep(1000)

def fail(event, context):
    print("about to fail")
    raise ValueError("bad value")

def exit3(event, context):
    sys.exit(3)

def chatty(event, context):
    print("line one")
    print("line two", file=sys.stderr)
    return "ok"
'''


@pytest.fixture
async def gate(nursery):
    return await Gate().start(nursery)


@pytest.fixture
def code(tmp_path):
    write_function(tmp_path / "fn", HANDLERS)
    (tmp_path / "fn" / "broken.py").write_text("import nonexistent_module_xyz\n")
    (tmp_path / "fn" / "slowinit.py").write_text(Gate.handler_snippet + "\nimport time\ntime.sleep(1000)\n")
    return tmp_path / "fn"


def function(code, handler, gate=None, **settings) -> FunctionConfig:
    env = {"GATE_PORT": str(gate.port)} if gate is not None else {}
    return awslambdaric_function("fn", code, f"app.{handler}" if "." not in handler else handler, env=env, **settings)


async def test_a_warm_environment_is_reused_and_reports_init_once(code):
    log = CapturedLog()
    async with running_server(function(code, "whoami"), sink=log) as server:
        first = await server.invoke("fn", b'{"n": 1}')
        second = await server.invoke("fn", b'{"n": 2}')
    assert json.loads(first.payload)["pid"] == json.loads(second.payload)["pid"]
    assert json.loads(second.payload)["event"] == {"n": 2}
    reports = [line for line in log.text.splitlines() if line.startswith("REPORT")]
    assert len(reports) == 2
    assert re.fullmatch(
        r"REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\tInit Duration: \d+\.\d\d ms\t", reports[0])
    assert "Init Duration" not in reports[1]


async def test_concurrent_invocations_get_environments_up_to_the_limit_then_429(code, gate):
    async with running_server(function(code, "gated", gate, concurrency=2)) as server:
        results = []

        async def invoke():
            results.append(await server.invoke("fn"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(invoke)
            nursery.start_soon(invoke)
            await gate.wait_arrivals(2)
            with pytest.raises(ServiceError) as refused:
                await server.invoke("fn")
            assert (refused.value.status, refused.value.error_type) == (429, "TooManyRequestsException")
            await gate.release_all()
        pids = {json.loads(r.payload)["pid"] for r in results}
        assert len(pids) == 2
        # Both environments are warm now: two more run without a third environment.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(invoke)
            nursery.start_soon(invoke)
            await gate.wait_arrivals(2)
            await gate.release_all()
        assert {json.loads(r.payload)["pid"] for r in results[2:]} == pids
        assert len(server.functions["fn"].environments) == 2


async def test_a_timeout_kills_the_whole_process_tree_and_the_next_invocation_starts_afresh(code, gate):
    log = CapturedLog()
    async with running_server(function(code, "spawn_and_hang", gate, timeout=1), sink=log) as server:
        async with trio.open_nursery() as nursery:
            results = []

            async def invoke():
                results.append(await server.invoke("fn"))

            nursery.start_soon(invoke)
            (arrival,) = await gate.wait_arrivals(1)
        (result,) = results
        child_pid = int(arrival.split()[1])
        assert result.function_error == "Unhandled"
        body = json.loads(result.payload)
        assert body["errorType"] == "Sandbox.Timedout"
        assert body["errorMessage"] == f"RequestId: {result.request_id} Error: Task timed out after 1.00 seconds"
        with trio.fail_after(10):  # SIGKILL was sent with the answer; its delivery is the event
            await _gone(child_pid)
        assert "Status: timeout" in log.text
        # The next invocation gets a new environment with its own init.
        fn = server.functions["fn"]
        for env in list(fn.environments):
            await env.closed.wait()
        server.functions["fn"]._make_spec = _swap_handler(fn._make_spec, "app.whoami")
        again = await server.invoke("fn")
        assert again.function_error is None


def _swap_handler(make_spec, handler):
    def spec(api):
        original = make_spec(api)
        return type(original)((*original.argv[:-1], handler), {**original.env, "_HANDLER": handler}, original.cwd)
    return spec


async def _gone(pid: int) -> None:
    """Returns once the process has exited (a pidfd turns readable then, whoever its parent is)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)


async def test_a_function_error_is_unhandled_and_keeps_the_environment(code):
    log = CapturedLog()
    async with running_server(function(code, "fail"), sink=log) as server:
        first = await server.invoke("fn", log_type="Tail")
        second = await server.invoke("fn")
        envs = server.functions["fn"].environments
        assert len(envs) == 1 and next(iter(envs)).statistics()["invocations"] == 2
    assert first.function_error == "Unhandled"
    body = json.loads(first.payload)
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "bad value")
    assert "about to fail" in first.log_tail
    assert first.log_tail.startswith(f"START RequestId: {first.request_id}")
    assert f"END RequestId: {first.request_id}" in first.log_tail
    assert second.function_error == "Unhandled"


async def test_a_runtime_exit_is_reported_with_its_status(code):
    log = CapturedLog()
    async with running_server(function(code, "exit3"), sink=log) as server:
        result = await server.invoke("fn")
    assert result.function_error == "Unhandled"
    assert json.loads(result.payload) == {
        "errorType": "Runtime.ExitError",
        "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: exit status 3",
    }
    assert "\tStatus: error\tError Type: Runtime.ExitError\t" in log.text


async def test_an_import_error_at_init_returns_the_posted_init_error(code):
    log = CapturedLog()
    async with running_server(function(code, "broken.handler"), sink=log) as server:
        result = await server.invoke("fn")
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"].startswith("Unable to import module 'broken': No module named 'nonexistent_module_xyz'")
    assert re.search(r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: error\tError Type: Runtime.ImportModuleError", log.text)


async def test_an_init_that_overruns_its_limit_times_out(code):
    async with running_server(function(code, "slowinit.handler", timeout=1, init_timeout=1)) as server:
        result = await server.invoke("fn")
    assert json.loads(result.payload)["errorType"] == "Sandbox.Timedout"


async def test_an_init_past_its_limit_goes_on_under_the_functions_timeout(tmp_path):
    """Lambda starts an init that outran its 10 s again inside the first invocation, under the
    function's timeout: an init slower than its limit but within the timeout ends in a result."""
    write_function(tmp_path, "import time\ntime.sleep(1.5)\n\ndef handler(event, context):\n    return 'ready'\n")
    async with running_server(awslambdaric_function("fn", tmp_path, timeout=30, init_timeout=0.5)) as server:
        result = await server.invoke("fn")
    assert (result.function_error, json.loads(result.payload)) == (None, "ready")


async def test_a_runtime_that_cannot_start_is_an_invalid_entrypoint(tmp_path):
    missing = str(tmp_path / "no-such-bootstrap")
    async with running_server(FunctionConfig(name="fn", code=str(tmp_path), runtime=[missing])) as server:
        result = await server.invoke("fn")
        again = await server.invoke("fn")
    body = json.loads(result.payload)
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert missing in body["errorMessage"]
    assert json.loads(again.payload)["errorType"] == "Runtime.InvalidEntrypoint"


async def test_runtime_output_is_attributed_to_its_invocation(code):
    async with running_server(function(code, "chatty")) as server:
        result = await server.invoke("fn", log_type="Tail")
    assert "line one\n" in result.log_tail and "line two\n" in result.log_tail
    lines = result.log_tail.splitlines()
    assert lines[0].startswith("START") and lines[-2].startswith("END") and lines[-1].startswith("REPORT")


async def test_an_idle_environment_is_reaped(code):
    async with running_server(function(code, "whoami", idle_timeout=0.2)) as server:
        await server.invoke("fn")
        (env,) = server.functions["fn"].environments
        with trio.fail_after(10):
            await env.closed.wait()
        assert not server.functions["fn"].environments
        result = await server.invoke("fn")
        assert result.function_error is None


async def test_event_and_dry_run_invocations(code, gate):
    async with running_server(function(code, "gated", gate)) as server:
        dry = await server.invoke("fn", invocation_type="DryRun")
        assert dry.status_code == 204 and not server.functions["fn"].environments
        event = await server.invoke("fn", invocation_type="Event")
        assert event.status_code == 202 and event.payload == b""
        (arrival,) = await gate.wait_arrivals(1)
        assert arrival.split()[0] == event.request_id
        await gate.release_all()


async def test_the_runtime_sees_lambdas_environment(tmp_path):
    write_function(tmp_path, "import os\ndef handler(e, c):\n    return dict(os.environ)\n")
    config = awslambdaric_function("envfn", tmp_path, timeout=7, memory=256, env={"MY_VAR": "4=4"})
    async with running_server(config) as server:
        env = json.loads((await server.invoke("envfn")).payload)
    assert env["MY_VAR"] == "4=4"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "envfn"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    # The code is at /var/task where the host permits standard isolation (the default), as on Lambda.
    assert env["LAMBDA_TASK_ROOT"] == ("/var/task" if host.mount_namespace_problem() is None else str(tmp_path))
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == "/aws/lambda/envfn"
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", env["AWS_LAMBDA_LOG_STREAM_NAME"])
    assert env["AWS_LAMBDA_INITIALIZATION_TYPE"] == "on-demand"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["TZ"] == ":UTC" and env["LANG"] == "en_US.UTF-8"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", env["AWS_LAMBDA_RUNTIME_API"])
    assert "_X_AMZN_TRACE_ID" in env  # set by the runtime from Lambda-Runtime-Trace-Id
    assert os.environ.get("HOME") is None or "HOME" not in env  # no host environment leaks in


async def test_the_metadata_endpoint_answers_the_runtime_with_its_token(tmp_path):
    write_function(tmp_path, '''
import os, urllib.request, urllib.error

def handler(event, context):
    url = f"http://{os.environ['AWS_LAMBDA_METADATA_API']}/2026-01-15/metadata/execution-environment"
    token = os.environ["AWS_LAMBDA_METADATA_TOKEN"]
    answers = {}
    for name, auth in (("bearer", f"Bearer {token}"), ("raw", token), ("none", None)):
        request = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
        try:
            with urllib.request.urlopen(request) as response:
                answers[name] = [response.status, response.read().decode(), response.headers["Cache-Control"]]
        except urllib.error.HTTPError as error:
            answers[name] = [error.code, error.read().decode()]
    return answers
''')
    async with running_server(awslambdaric_function("meta", tmp_path, region="eu-west-1")) as server:
        answers = json.loads((await server.invoke("meta")).payload)
    assert answers["bearer"] == [200, '{"AvailabilityZoneID":"euw1-az1"}', "private, max-age=43200, immutable"]
    assert answers["raw"] == answers["none"] == [401, "Unauthorized\n"]


@pytest.mark.parametrize("script, reason", [
    ("#!/bin/sh\r\necho hi\n", "has Windows (CRLF) line endings"),
    ("echo no interpreter line\n", "exec format error"),
    ("#!/no/such/interpreter\n", "/no/such/interpreter"),
])
async def test_a_runtime_that_cannot_start_gets_doctors_reason(tmp_path, script, reason):
    bootstrap = tmp_path / "bootstrap"
    bootstrap.write_text(script)
    bootstrap.chmod(0o755)
    async with running_server(FunctionConfig(name="fn", code=str(tmp_path), runtime=[str(bootstrap)])) as server:
        result = await server.invoke("fn")
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert body["errorMessage"].startswith(f"RequestId: {result.request_id} Error: {bootstrap}")
    assert reason in body["errorMessage"]

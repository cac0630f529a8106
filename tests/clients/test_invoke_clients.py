"""Real invoke-side clients against `lambdalet serve`'s Invoke API: boto3, the AWS CLI (v1) and curl,
with awslambdaric as the runtime. Each test asserts what the client's user sees."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ReadTimeoutError

from client_functions import (
    IMPORT_ERROR_FUNCTION, PYTHON_FUNCTION, Rendezvous, big_event, invoke, lambda_client, payload_json, process_alive,
)
from helpers import CapturedLog, awslambdaric_function, threaded_server, wait_until, write_function

ARN = "arn:aws:lambda:us-east-1:123456789012:function:{}"


@pytest.fixture
def code(tmp_path):
    """A function directory whose module `app` has one handler per behaviour (client_functions)."""
    return write_function(tmp_path / "code", PYTHON_FUNCTION)


def function(name, code, handler, **settings):
    """(Tests whose handler leaves marks in the test's own directory ask for isolation "none":
    under "standard" the handler has a /tmp of its own.)"""
    return awslambdaric_function(name, code, handler=f"app.{handler}", **settings)


# --- boto3: invocation types -----------------------------------------------------------------------


def test_request_response_returns_the_payload(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        response = invoke(client, FunctionName="echo", Payload=b'{"name": "boto3", "n": [1, 2]}')
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in response
    assert payload_json(response) == {"name": "boto3", "n": [1, 2]}


def test_no_payload_is_an_empty_object_event(code):
    with threaded_server(function("echo", code, "echo")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="echo")
    assert response["StatusCode"] == 200
    assert payload_json(response) == {}


def test_invocations_reuse_a_warm_environment_until_it_fails(code):
    with threaded_server(function("count", code, "count")) as server:
        client = lambda_client(server.endpoint)
        warm = [payload_json(invoke(client, FunctionName="count", Payload=b"{}")) for _ in range(3)]
        crashed = invoke(client, FunctionName="count", Payload=b'{"exit": true}')
        fresh = payload_json(invoke(client, FunctionName="count", Payload=b"{}"))
    assert warm == [1, 2, 3]
    assert crashed["FunctionError"] == "Unhandled"
    assert fresh == 1, "after a crash the next invocation runs in a new environment"


def test_the_handler_sees_its_function_in_the_context(code):
    config = function("ctx", code, "describe", memory=256, timeout=7, env={"GREETING": "hello"})
    with threaded_server(config) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="ctx", Payload=b"{}")
    context = payload_json(response)
    assert context.pop("aws_request_id") == response["ResponseMetadata"]["RequestId"]
    remaining_ms = context.pop("remaining_ms")
    assert 0 < remaining_ms <= 7000
    assert context == {
        "function_name": "ctx",
        "function_version": "$LATEST",
        "invoked_function_arn": ARN.format("ctx"),
        "memory_limit_in_mb": "256",
        "log_group_name": "/aws/lambda/ctx",
        "region": "us-east-1",
        "greeting": "hello",
    }


def test_invoked_function_arn_carries_the_callers_qualifier(code):
    with threaded_server(function("ctx", code, "describe")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="ctx", Qualifier="$LATEST", Payload=b"{}")
    assert payload_json(response)["invoked_function_arn"] == ARN.format("ctx") + ":$LATEST"


def test_callers_trace_id_reaches_the_handler(code):
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    with threaded_server(function("trace", code, "trace_id")) as server:
        client = lambda_client(server.endpoint)
        client.meta.events.register("before-sign.lambda.Invoke",
                                    lambda request, **_: request.headers.__setitem__("X-Amzn-Trace-Id", trace))
        traced = invoke(client, FunctionName="trace", Payload=b"{}")
        untraced = invoke(lambda_client(server.endpoint), FunctionName="trace", Payload=b"{}")
    assert payload_json(traced) == trace
    assert payload_json(untraced).startswith("Root=1-"), "without one from the caller, lambdalet makes one"


def test_event_invocation_is_accepted_and_runs_in_the_background(code, tmp_path):
    event = {"dir": str(tmp_path), "mark": "event"}
    with threaded_server(function("recorder", code, "record", isolation="none")) as server, Rendezvous() as meeting:
        client = lambda_client(server.endpoint)
        accepted = invoke(client, FunctionName="recorder", InvocationType="Event",
                          Payload=json.dumps({**event, "port": meeting.port}))
        assert accepted["StatusCode"] == 202
        assert accepted["Payload"] == b""
        # The caller had its 202 while the handler had not returned: it is running now.
        assert meeting.meet() == "event"
        meeting.release_all()
        readback = invoke(client, FunctionName="recorder", Payload=json.dumps({**event, "mark": "after"}))
    assert payload_json(readback) == ["event", "after"]


def test_dry_run_answers_204_and_does_not_run_the_function(code, tmp_path):
    event = {"dir": str(tmp_path)}
    log = CapturedLog()
    with threaded_server(function("recorder", code, "record", isolation="none"), sink=log) as server:
        client = lambda_client(server.endpoint)
        dry = invoke(client, FunctionName="recorder", InvocationType="DryRun",
                     Payload=json.dumps({**event, "mark": "dry"}))
        assert dry["StatusCode"] == 204
        assert dry["Payload"] == b""
        readback = invoke(client, FunctionName="recorder", Payload=json.dumps({**event, "mark": "real"}))
    assert payload_json(readback) == ["real"]
    assert log.text.count("START RequestId:") == 1


def test_dry_run_of_an_unknown_function_is_not_found(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            invoke(client, FunctionName="no-such-function", InvocationType="DryRun", Payload=b"{}")


def test_event_invocation_waits_for_a_busy_function_instead_of_being_refused(code):
    with ThreadPoolExecutor(1) as pool, \
            threaded_server(function("single", code, "rendezvous", concurrency=1, timeout=30)) as server, \
            Rendezvous() as meeting:
        client = lambda_client(server.endpoint)
        busy = pool.submit(invoke, client, FunctionName="single",
                           Payload=json.dumps({"port": meeting.port, "mark": "busy"}))
        assert meeting.meet() == "busy"
        queued = invoke(client, FunctionName="single", InvocationType="Event",
                        Payload=json.dumps({"port": meeting.port, "mark": "queued"}))
        assert queued["StatusCode"] == 202
        meeting.release_all()
        assert payload_json(busy.result(timeout=60)) == {"mark": "busy"}
        assert meeting.meet() == "queued"  # it ran once the environment was free


def test_concurrent_invocations_run_in_parallel_environments(code):
    with ThreadPoolExecutor(2) as pool, \
            threaded_server(function("pair", code, "rendezvous", concurrency=2, timeout=30)) as server, \
            Rendezvous() as meeting:
        client = lambda_client(server.endpoint)
        calls = [pool.submit(invoke, client, FunctionName="pair",
                             Payload=json.dumps({"port": meeting.port, "mark": mark}))
                 for mark in ("a", "b")]
        # Both handlers are running at the same time before either is let go.
        assert {meeting.meet(), meeting.meet()} == {"a", "b"}
        meeting.release_all()
        results = [payload_json(call.result(timeout=60)) for call in calls]
    assert results == [{"mark": "a"}, {"mark": "b"}]


def test_many_concurrent_callers_each_get_their_own_answer(code):
    callers, calls_each = 6, 5
    # Room for each caller's finishing environment and its next one (see test_runtime_clients's
    # test_one_call_at_a_time_is_never_throttled).
    config = function("echo", code, "echo", concurrency=2 * callers)
    with ThreadPoolExecutor(callers) as pool, threaded_server(config) as server:
        clients = [lambda_client(server.endpoint) for _ in range(callers)]

        def call_repeatedly(caller: int) -> list[object]:
            return [payload_json(invoke(clients[caller], FunctionName="echo",
                                        Payload=json.dumps({"caller": caller, "call": call})))
                    for call in range(calls_each)]

        answers = list(pool.map(call_repeatedly, range(callers)))
    assert answers == [[{"caller": caller, "call": call} for call in range(calls_each)] for caller in range(callers)]


def test_an_idle_environment_is_reaped_and_the_next_invoke_starts_a_new_one(code):
    with threaded_server(function("who", code, "whoami", idle_timeout=0.5)) as server:
        client = lambda_client(server.endpoint)
        first = payload_json(invoke(client, FunctionName="who", Payload=b"{}"))["pid"]
        wait_until(lambda: not process_alive(first), "the idle environment to be shut down")
        second = payload_json(invoke(client, FunctionName="who", Payload=b"{}"))["pid"]
    assert second != first



def test_log_tail_holds_this_invocations_output_and_platform_lines(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        invoke(client, FunctionName="echo", Payload=b'{"call": "first"}', LogType="Tail")
        response = invoke(client, FunctionName="echo", Payload=b'{"call": "second"}', LogType="Tail")
    request_id = response["ResponseMetadata"]["RequestId"]
    lines = base64.b64decode(response["LogResult"]).decode().splitlines()
    assert lines[0] == f"START RequestId: {request_id} Version: $LATEST"
    assert 'echo handler saw {"call": "second"}' in lines
    assert f"END RequestId: {request_id}" in lines
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\tDuration: ")
    assert not any("first" in line for line in lines), "the tail holds only this invocation's log"


def test_log_tail_is_the_last_4_kb(code):
    with threaded_server(function("chatty", code, "chatty")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="chatty", LogType="Tail")
    tail = base64.b64decode(response["LogResult"])
    assert len(tail) <= 4096
    assert b"line 39 " in tail and b"line 00 " not in tail
    assert tail.decode().splitlines()[-1].startswith("REPORT RequestId: ")


def test_no_log_result_unless_asked(code):
    with threaded_server(function("echo", code, "echo")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="echo", Payload=b"{}")
    assert "LogResult" not in response


# --- boto3: function errors --------------------------------------------------------------------------


def test_handler_exception_is_an_unhandled_function_error(code):
    with threaded_server(function("fail", code, "fail")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="fail", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = payload_json(response)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "the handler failed on purpose"


def test_log_tail_of_a_failed_invocation_holds_the_error(code):
    with threaded_server(function("fail", code, "fail")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="fail", Payload=b"{}", LogType="Tail")
    log = base64.b64decode(response["LogResult"]).decode()
    assert "ValueError: the handler failed on purpose" in log
    assert log.splitlines()[-1].startswith(f"REPORT RequestId: {response['ResponseMetadata']['RequestId']}\t")


def test_response_over_6_mb_is_a_function_error(code):
    with threaded_server(function("big", code, "too_big")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="big", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload_json(response)["errorType"] == "Function.ResponseSizeTooLarge"


def test_timeout_is_sandbox_timedout_and_the_next_invoke_works(code):
    with threaded_server(function("slow", code, "maybe_slow", timeout=1)) as server:
        client = lambda_client(server.endpoint)
        timed_out = invoke(client, FunctionName="slow", Payload=b'{"sleep": 5}')
        after = invoke(client, FunctionName="slow", Payload=b"{}")
    assert timed_out["StatusCode"] == 200
    assert timed_out["FunctionError"] == "Unhandled"
    error = payload_json(timed_out)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert "FunctionError" not in after
    assert payload_json(after) == "done"


def test_exit_in_the_handler_is_runtime_exit_error_and_the_next_invoke_works(code):
    with threaded_server(function("exits", code, "exit_3")) as server:
        client = lambda_client(server.endpoint)
        exited = invoke(client, FunctionName="exits", Payload=b'{"exit": true}')
        after = invoke(client, FunctionName="exits", Payload=b"{}")
    assert exited["StatusCode"] == 200
    assert exited["FunctionError"] == "Unhandled"
    error = payload_json(exited)
    assert error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert payload_json(after) == "still here"


def test_report_of_an_exited_runtime_has_its_measured_memory(code):
    with threaded_server(function("exits", code, "exit_3")) as server:
        client = lambda_client(server.endpoint)
        response = invoke(client, FunctionName="exits", Payload=b'{"exit": true}', LogType="Tail")
    report = base64.b64decode(response["LogResult"]).decode().splitlines()[-1]
    fields = dict(field.split(": ", 1) for field in report.split("\t")[1:] if field)
    assert fields["Memory Size"] == "128 MB"
    assert int(fields["Max Memory Used"].removesuffix(" MB")) < 128, report


def test_import_error_at_init_is_reported_to_the_caller(tmp_path):
    code = write_function(tmp_path / "broken", IMPORT_ERROR_FUNCTION)
    with threaded_server(awslambdaric_function("broken", code)) as server:
        client = lambda_client(server.endpoint)
        responses = [invoke(client, FunctionName="broken", Payload=b"{}") for _ in range(2)]
    for response in responses:  # every invocation tries a new init, and fails the same way
        assert response["StatusCode"] == 200
        assert response["FunctionError"] == "Unhandled"
        error = payload_json(response)
        assert error["errorType"] == "Runtime.ImportModuleError"
        assert "module_that_is_not_installed" in error["errorMessage"]


# --- boto3: service errors are its modelled exceptions ---------------------------------------------


def test_unknown_function_raises_resource_not_found(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
            invoke(client, FunctionName="no-such-function", Payload=b"{}")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "no-such-function" in raised.value.response["Error"]["Message"]


def test_payload_over_6_mb_raises_request_too_large(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        with pytest.raises(client.exceptions.RequestTooLargeException) as raised:
            invoke(client, FunctionName="echo", Payload=big_event(6 * 1024 * 1024))
        still_serving = invoke(client, FunctionName="echo", Payload=b'{"ok": 1}')
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert payload_json(still_serving) == {"ok": 1}


def test_event_payload_over_1_mb_raises_request_too_large(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        with pytest.raises(client.exceptions.RequestTooLargeException):
            invoke(client, FunctionName="echo", InvocationType="Event", Payload=big_event(2 * 1024 * 1024))


def test_payload_that_is_not_json_raises_invalid_request_content(code):
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        with pytest.raises(client.exceptions.InvalidRequestContentException) as raised:
            invoke(client, FunctionName="echo", Payload=b"{this is not json")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_concurrency_exhausted_raises_too_many_requests(code):
    # Exit order matters on failure: release the handler, stop the server, then join the thread.
    with ThreadPoolExecutor(1) as pool, \
            threaded_server(function("single", code, "rendezvous", concurrency=1, timeout=30)) as server, \
            Rendezvous() as meeting:
        client = lambda_client(server.endpoint)
        first = pool.submit(invoke, client, FunctionName="single",
                            Payload=json.dumps({"port": meeting.port, "mark": "first"}))
        assert meeting.meet() == "first"  # the only environment is busy now
        with pytest.raises(client.exceptions.TooManyRequestsException) as raised:
            invoke(client, FunctionName="single", Payload=b"{}")
        meeting.release_all()
        response = first.result(timeout=60)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert response["StatusCode"] == 200
    assert payload_json(response) == {"mark": "first"}


def test_caller_that_gives_up_does_not_disturb_the_function_or_the_server(code, tmp_path):
    """A caller whose read times out leaves; its invocation still completes, and others are served."""
    event = {"dir": str(tmp_path)}
    with threaded_server(function("recorder", code, "record", timeout=30, isolation="none")) as server, Rendezvous() as meeting:
        impatient = lambda_client(server.endpoint, read_timeout=1)
        with pytest.raises(ReadTimeoutError):  # the handler is held at the rendezvous until after this
            impatient.invoke(FunctionName="recorder",
                             Payload=json.dumps({**event, "mark": "abandoned", "port": meeting.port}))
        assert meeting.meet() == "abandoned"
        meeting.release_all()
        readback = invoke(lambda_client(server.endpoint), FunctionName="recorder",
                          Payload=json.dumps({**event, "mark": "next"}))
    assert payload_json(readback) == ["abandoned", "next"]


# --- boto3: naming the function -----------------------------------------------------------------------


@pytest.mark.parametrize("name, qualifier", [
    ("echo", None),
    ("echo:$LATEST", None),
    ("123456789012:function:echo", None),
    (ARN.format("echo"), None),
    (ARN.format("echo") + ":$LATEST", None),
    ("echo", "$LATEST"),
], ids=["name", "name-latest", "partial-arn", "full-arn", "full-arn-latest", "qualifier-latest"])
def test_function_name_forms(code, name, qualifier):
    options = {"Qualifier": qualifier} if qualifier else {}
    with threaded_server(function("echo", code, "echo")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName=name, Payload=b'{"form": 1}', **options)
    assert response["StatusCode"] == 200
    assert response["ExecutedVersion"] == "$LATEST"
    assert payload_json(response) == {"form": 1}


@pytest.mark.parametrize("name, qualifier", [("echo", "7"), ("echo:prod", None)], ids=["qualifier", "name-suffix"])
def test_unknown_qualifier_raises_resource_not_found(code, name, qualifier):
    options = {"Qualifier": qualifier} if qualifier else {}
    with threaded_server(function("echo", code, "echo")) as server:
        client = lambda_client(server.endpoint)
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            invoke(client, FunctionName=name, Payload=b"{}", **options)


def test_client_context_reaches_the_handler(code):
    context = {"client": {"installation_id": "i-1", "app_title": "tests"},
               "custom": {"tenant": "blue", "n": 3}, "env": {}}
    encoded = base64.b64encode(json.dumps(context).encode()).decode()
    with threaded_server(function("context", code, "client_context")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="context", Payload=b"{}", ClientContext=encoded)
    assert payload_json(response) == {"tenant": "blue", "n": 3}


# --- the AWS CLI (v1) ----------------------------------------------------------------------------------


def aws(tmp_path, *args: str) -> subprocess.CompletedProcess:
    """`aws ...` as a user runs it: credentials and region from the environment, no config files."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }
    return subprocess.run([sys.executable, "-m", "awscli", *args], env=env, capture_output=True, text=True, timeout=120)


def test_aws_cli_invoke_prints_status_and_writes_the_payload(code, tmp_path):
    outfile = tmp_path / "out.json"
    with threaded_server(function("echo", code, "echo")) as server:
        done = aws(tmp_path, "lambda", "invoke", "--endpoint-url", server.endpoint,
                   "--function-name", "echo", "--payload", '{"from": "cli"}', str(outfile))
    assert done.returncode == 0, done.stderr
    assert '"StatusCode": 200' in done.stdout
    assert json.loads(done.stdout)["ExecutedVersion"] == "$LATEST"
    assert json.loads(outfile.read_text()) == {"from": "cli"}


def test_aws_cli_log_type_tail_prints_the_log_result(code, tmp_path):
    with threaded_server(function("echo", code, "echo")) as server:
        done = aws(tmp_path, "lambda", "invoke", "--endpoint-url", server.endpoint, "--function-name", "echo",
                   "--payload", '{"from": "cli"}', "--log-type", "Tail", str(tmp_path / "out.json"))
    assert done.returncode == 0, done.stderr
    log = base64.b64decode(json.loads(done.stdout)["LogResult"]).decode()
    assert 'echo handler saw {"from": "cli"}' in log
    assert log.startswith("START RequestId: ") and "\nREPORT RequestId: " in log


def test_aws_cli_shows_a_function_error(code, tmp_path):
    outfile = tmp_path / "out.json"
    with threaded_server(function("fail", code, "fail")) as server:
        done = aws(tmp_path, "lambda", "invoke", "--endpoint-url", server.endpoint,
                   "--function-name", "fail", "--payload", "{}", str(outfile))
    assert done.returncode == 0, done.stderr
    assert '"FunctionError": "Unhandled"' in done.stdout
    assert json.loads(outfile.read_text())["errorType"] == "ValueError"


# --- curl ----------------------------------------------------------------------------------------------

CURL = "/usr/bin/curl"
needs_curl = pytest.mark.skipif(not os.access(CURL, os.X_OK), reason=f"{CURL} is not installed")


def curl_post(url: str, body_file, out_file, *, timeout: float = 60) -> tuple[str, str]:
    """POST a file with curl; return (`%{http_code} %{size_upload}`, curl's verbose trace).

    curl sends `Expect: 100-continue` for a large body; told to wait for the answer (almost)
    forever, it can only finish if the server answers the expectation."""
    try:
        done = subprocess.run(
            [CURL, "-sS", "-v", "--expect100-timeout", "600", "--data-binary", f"@{body_file}",
             "-o", str(out_file), "-w", "%{http_code} %{size_upload}", url],
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("curl was still waiting: the server never answered `Expect: 100-continue`")
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@needs_curl
def test_curl_large_payload_with_expect_100_continue(code, tmp_path):
    body = big_event()
    (tmp_path / "event.json").write_bytes(body)
    with threaded_server(function("echo", code, "echo")) as server:
        url = f"{server.endpoint}/2015-03-31/functions/echo/invocations"
        written, trace = curl_post(url, tmp_path / "event.json", tmp_path / "out.json")
    assert written == f"200 {len(body)}"
    assert "> Expect: 100-continue" in trace
    assert "\n< HTTP/1.1 100 " in trace  # the interim response came
    assert (tmp_path / "out.json").read_bytes() == body

"""Real runtime clients under `lambdalet serve`: the AWS docs' bash + curl custom runtime and the
Node.js runtime interface client from npm (`aws-lambda-ric`), invoked with boto3."""

from __future__ import annotations

import base64
import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks import realparts
from client_functions import (
    Rendezvous, big_event, invoke, lambda_client, payload_json, write_bash_function, write_node_function,
)
from helpers import CapturedLog, threaded_server
from runtime_api import FunctionConfig

# --- the AWS docs' bash + curl bootstrap ---------------------------------------------------------------

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="the bash bootstrap needs curl on PATH")


def bash_function(tmp_path, handler: str = "function.handler", **settings) -> FunctionConfig:
    code = write_bash_function(tmp_path / "bash")
    # CURL_HOME points curl at the .curlrc that makes a missing `100 Continue` a timeout.
    return FunctionConfig(name="bash", code=str(code), handler=handler,
                          runtime=[str(code / "bootstrap")], timeout=20, env={"CURL_HOME": str(code)}, **settings)


@needs_curl
def test_bash_bootstrap_echoes_events(tmp_path):
    with threaded_server(bash_function(tmp_path)) as server:
        client = lambda_client(server.endpoint)
        first = invoke(client, FunctionName="bash", Payload=b'{"call": 1}', LogType="Tail")
        second = invoke(client, FunctionName="bash", Payload=b'{"call": 2}', LogType="Tail")
    assert (first["StatusCode"], second["StatusCode"]) == (200, 200)
    assert "FunctionError" not in first and "FunctionError" not in second
    assert (first["Payload"], second["Payload"]) == (b'{"call": 1}', b'{"call": 2}')
    for response in (first, second):
        request_id = response["ResponseMetadata"]["RequestId"]
        lines = base64.b64decode(response["LogResult"]).decode().splitlines()
        assert f"START RequestId: {request_id} Version: $LATEST" in lines
        assert any(line.startswith(f"REPORT RequestId: {request_id}\t") for line in lines)


@needs_curl
def test_runtime_output_before_its_next_request_precedes_end_and_report(tmp_path):
    log = CapturedLog()
    with threaded_server(bash_function(tmp_path), sink=log) as server:
        client = lambda_client(server.endpoint)
        first = invoke(client, FunctionName="bash", Payload=b'{"call": 1}')
        invoke(client, FunctionName="bash", Payload=b'{"call": 2}')
    request_id = first["ResponseMetadata"]["RequestId"]
    lines = log.text.splitlines()
    start = lines.index(f"START RequestId: {request_id} Version: $LATEST")
    end = lines.index(f"END RequestId: {request_id}")
    # The bootstrap's curl prints the Runtime API's answer to its POST .../response, then loops
    # round to ask for the next event: that line is the first invocation's output.
    assert '{"status":"OK"}' in lines[start:end], "\n".join(lines)


@needs_curl
def test_bash_tutorial_function_answers_text(tmp_path):
    with threaded_server(bash_function(tmp_path, "tutorial.handler")) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="bash", Payload=b'{"call": 1}', LogType="Tail")
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert response["Payload"] == b"Echoing request: '{\"call\": 1}'"  # not JSON: passed on as it came
    assert '{"call": 1}' in base64.b64decode(response["LogResult"]).decode().splitlines()  # its stderr


@needs_curl
def test_bash_bootstrap_posts_a_2_mb_response_with_expect_100_continue(tmp_path):
    event = big_event()
    with threaded_server(bash_function(tmp_path)) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="bash", Payload=event)
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Payload"][:300]
    assert response["Payload"] == event


@needs_curl
def test_bash_handler_failure_exits_the_bootstrap_and_is_runtime_exit_error(tmp_path):
    # The tutorial's bootstrap has no error path: under `set -e` a failing handler ends it.
    with threaded_server(bash_function(tmp_path, "function.fail")) as server:
        client = lambda_client(server.endpoint)
        responses = [invoke(client, FunctionName="bash", Payload=b'{"n": 1}', LogType="Tail") for _ in range(2)]
    for response in responses:  # each in a new environment, each failing the same way
        assert response["StatusCode"] == 200
        assert response["FunctionError"] == "Unhandled"
        error = payload_json(response)
        assert error["errorType"] == "Runtime.ExitError"
        assert error["errorMessage"].endswith("Runtime exited with error: exit status 1")
        assert 'fail: giving up on {"n": 1}' in base64.b64decode(response["LogResult"]).decode()


@needs_curl
def test_one_call_at_a_time_is_never_throttled(tmp_path):
    # The bash runtime starts two processes (mktemp, curl) between posting a response and asking
    # for the next event, so the caller's next invoke nearly always arrives in that gap.
    with threaded_server(bash_function(tmp_path, concurrency=1)) as server:
        client = lambda_client(server.endpoint)
        throttled = 0
        for call in range(20):
            try:
                invoke(client, FunctionName="bash", Payload=json.dumps({"call": call}))
            except client.exceptions.TooManyRequestsException:
                throttled += 1
    assert throttled == 0, f"{throttled} of 20 sequential invocations were refused with 429"


# --- the Node.js runtime interface client -----------------------------------------------------------


@pytest.fixture(scope="module")
def node_ric_entry():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to build and run aws-lambda-ric")
    package = realparts.node_ric() / "node_modules" / "aws-lambda-ric"  # the first build takes ~90 s
    return package / "index.mjs"


def node_function(name, code, handler, entry, **settings) -> FunctionConfig:
    # aws-lambda-ric 4 ignores its argv and reads _HANDLER, LAMBDA_TASK_ROOT and
    # AWS_LAMBDA_RUNTIME_API, which lambdalet sets; the handler argument is for RIE-style launchers.
    return FunctionConfig(name=name, code=str(code), handler=handler, runtime=["node", str(entry), handler],
                          **settings)


def test_node_ric_returns_the_handlers_result(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node", code, "index.handler", node_ric_entry)) as server:
        client = lambda_client(server.endpoint)
        first = invoke(client, FunctionName="node", Payload=b'{"from": "boto3"}')
        second = invoke(client, FunctionName="node", Payload=b'{"again": true}')
    assert first["StatusCode"] == 200
    assert first["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in first
    assert payload_json(first) == {"echo": {"from": "boto3"}}
    assert payload_json(second) == {"echo": {"again": True}}


def test_node_ric_gets_an_empty_object_for_no_payload(tmp_path, node_ric_entry):
    # The RIC JSON.parse()s the event: an empty body would crash it (it does under RIE).
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node", code, "index.handler", node_ric_entry)) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="node")
    assert "FunctionError" not in response, response["Payload"]
    assert payload_json(response) == {"echo": {}}


def test_node_ric_context_has_the_invocation(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    client_context = base64.b64encode(json.dumps({"custom": {"tenant": "blue"}}).encode()).decode()
    with threaded_server(node_function("node-ctx", code, "index.context", node_ric_entry)) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="node-ctx", Payload=b"{}",
                          ClientContext=client_context)
    assert payload_json(response) == {
        "functionName": "node-ctx",
        "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:node-ctx",
        "awsRequestId": response["ResponseMetadata"]["RequestId"],
        "custom": {"tenant": "blue"},
    }


def test_node_ric_missing_handler_module_is_an_init_error(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node-broken", code, "missing.handler", node_ric_entry)) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="node-broken", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload_json(response)["errorType"] == "Runtime.ImportModuleError"


def test_node_ric_thrown_error_is_an_unhandled_function_error(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node-fail", code, "index.fail", node_ric_entry)) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="node-fail", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = payload_json(response)
    assert error["errorType"] == "Error"
    assert error["errorMessage"] == "the node handler failed on purpose"


def test_node_ric_timeout_is_sandbox_timedout_and_the_next_invoke_works(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node-slow", code, "index.slow", node_ric_entry, timeout=1)) as server:
        client = lambda_client(server.endpoint)
        timed_out = invoke(client, FunctionName="node-slow", Payload=b'{"sleep": 10}')
        after = invoke(client, FunctionName="node-slow", Payload=b"{}")
    assert timed_out["FunctionError"] == "Unhandled"
    error = payload_json(timed_out)
    assert error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert "FunctionError" not in after
    assert payload_json(after) == "done"


def test_node_ric_response_over_6_mb_is_a_function_error(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node-big", code, "index.tooBig", node_ric_entry)) as server:
        response = invoke(lambda_client(server.endpoint), FunctionName="node-big", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    assert payload_json(response)["errorType"] == "Function.ResponseSizeTooLarge"


def test_node_ric_streamed_response_is_relayed_as_it_arrives(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    config = node_function("node-stream", code, "index.streamMeeting", node_ric_entry, timeout=20)
    # Exit order matters on failure: release the handler, stop the server, then join the thread.
    with ThreadPoolExecutor(1) as pool, threaded_server(config) as server, Rendezvous() as meeting:
        client = lambda_client(server.endpoint)
        started = pool.submit(client.invoke, FunctionName="node-stream",
                              Payload=json.dumps({"port": meeting.port, "mark": "streaming"}))
        assert meeting.meet() == "streaming"  # the first chunk is written; the handler waits
        response = started.result(timeout=60)
        # Had lambdalet buffered the stream, nothing would come until the function timed out,
        # and then without the second chunk.
        first = response["Payload"].read(len(b"first chunk;"))
        meeting.release_all()
        rest = response["Payload"].read()
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response
    assert (first, rest) == (b"first chunk;", b"second chunk")


def test_node_ric_stream_through_invoke_with_response_stream(tmp_path, node_ric_entry):
    code = write_node_function(tmp_path / "node")
    with threaded_server(node_function("node-stream", code, "index.stream", node_ric_entry)) as server:
        response = lambda_client(server.endpoint).invoke_with_response_stream(FunctionName="node-stream", Payload=b"{}")
        events = list(response["EventStream"])
    assert response["StatusCode"] == 200
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e) == b"first chunk;second chunk"
    assert "ErrorCode" not in events[-1]["InvokeComplete"]

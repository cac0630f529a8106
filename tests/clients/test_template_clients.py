"""A SAM template served by `lambdalet serve --template` as a process, driven by boto3 as its deployed
version would be; `lambdalet invoke --template` as a process; what start-up refuses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from functools import partial

import pytest
import trio

from client_functions import invoke, lambda_client, payload_json
from helpers import PYTHON, REPO, Gate, free_port, lambdalet_serve, write_function

def environment() -> dict[str, str]:
    """The processes' environment, taken when they start: after conftest.py's session fixture has
    given the session its own state directory (a copy made at import would hold the user's)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
LAMBDALET = [PYTHON, "-m", "runtime_api.cli"]

HANDLERS = Gate.handler_snippet + '''
import os

def hello(event, context):
    return {"name": context.function_name, "arn": context.invoked_function_arn,
            "tenant": context.tenant_id, "greeting": os.environ.get("GREETING"),
            "log_format": os.environ.get("AWS_LAMBDA_LOG_FORMAT"),
            "log_level": os.environ.get("AWS_LAMBDA_LOG_LEVEL")}

def fail(event, context):
    raise ValueError("failed on purpose")

def sleep_at_gate(event, context):
    return wait_at_gate(context)
'''


def template(tmp_path, gate_port: int = 0) -> str:
    write_function(tmp_path / "src", HANDLERS)
    # GREETING is declared so that an --env-vars file may override it (SAM overrides only what the
    # template declares). Runtime and CodeUri are each zip function's own: an image function must not
    # have them, and Globals would give them to it.
    env = {"Variables": {"GATE_PORT": str(gate_port), "GREETING": "hello"}}
    zipped = {"CodeUri": "src", "Runtime": "python3.12"}
    document = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"SlowTimeout": {"Type": "Number", "Default": "1"}},
        "Mappings": {"Sizes": {"Short": {"Timeout": "1"}}},
        "Globals": {"Function": {"Environment": env}},
        "Resources": {
            "HelloFunction": {"Type": "AWS::Serverless::Function",
                              "Properties": {**zipped, "Handler": "app.hello", "FunctionName": "hello-fn"}},
            "FailFunction": {"Type": "AWS::Serverless::Function", "Properties": {**zipped, "Handler": "app.fail"}},
            "ParamTimeout": {"Type": "AWS::Serverless::Function",
                             "Properties": {**zipped, "Handler": "app.sleep_at_gate", "Timeout": {"Ref": "SlowTimeout"}}},
            "MappedTimeout": {"Type": "AWS::Serverless::Function", "Properties": {**zipped,
                "Handler": "app.sleep_at_gate", "Timeout": {"Fn::FindInMap": ["Sizes", "Short", "Timeout"]}}},
            "Sleeper": {"Type": "AWS::Serverless::Function",
                        "Properties": {**zipped, "Handler": "app.sleep_at_gate", "Timeout": 60}},
            "ImageFunction": {"Type": "AWS::Serverless::Function",
                              "Properties": {"PackageType": "Image", "ImageUri": "hello:latest"}},
            "TenantFunction": {"Type": "AWS::Serverless::Function",
                               "Properties": {**zipped, "Handler": "app.hello", "TenancyConfig": {"TenantIsolationMode": "PER_TENANT"}}},
            "JsonLogs": {"Type": "AWS::Serverless::Function", "Properties": {**zipped,
                "Handler": "app.hello", "LoggingConfig": {"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG"}}},
        },
    }
    path = tmp_path / "template.yaml"
    path.write_text(json.dumps(document, indent=1))
    return str(path)


def serving(*args: str, log_dir, cwd=None):
    return lambdalet_serve(*args, log_dir=log_dir, cwd=cwd, env=environment())


async def call(client, **params) -> dict:
    """boto3's invoke from a thread (its payload read), so the test's trio tasks go on meanwhile."""
    return await trio.to_thread.run_sync(partial(invoke, client, **params))


async def test_boto3_invokes_a_served_template_by_logical_id_and_by_function_name(tmp_path, gate):
    with serving("--template", template(tmp_path, gate.port), log_dir=tmp_path) as served:
        endpoint = await trio.to_thread.run_sync(served.wait_announced)
        client = lambda_client(endpoint)
        listing = "".join(served.stderr_lines)
        assert "function HelloFunction (also hello-fn): python3.12, 128 MB, 3 s timeout" in listing
        for name in ("HelloFunction", "hello-fn", "arn:aws:lambda:us-east-1:123456789012:function:hello-fn"):
            response = await call(client, FunctionName=name, Payload=b"{}")
            assert "FunctionError" not in response
            body = payload_json(response)
            # Whichever name the caller used, the runtime sees the function as deployed: its FunctionName.
            assert body["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:hello-fn"
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            await call(client, FunctionName="NoSuchFunction", Payload=b"{}")

        failed = await call(client, FunctionName="FailFunction", Payload=b"{}")
        assert failed["FunctionError"] == "Unhandled"
        assert payload_json(failed)["errorType"] == "ValueError"

        # Timeouts from a parameter and from a mapping (1 s each): the handlers wait at the gate, unreleased.
        for name in ("ParamTimeout", "MappedTimeout"):
            timed_out = await call(client, FunctionName=name, Payload=b"{}")
            assert payload_json(timed_out)["errorType"] == "Sandbox.Timedout", name
            assert "Task timed out after 1.00 seconds" in payload_json(timed_out)["errorMessage"]


async def test_ten_invocations_of_a_sleeping_function_all_run_at_once(tmp_path, gate):
    with serving("--template", template(tmp_path, gate.port), log_dir=tmp_path) as served:
        client = lambda_client(await trio.to_thread.run_sync(served.wait_announced))
        responses = []

        async def sleep():
            responses.append(await call(client, FunctionName="Sleeper", Payload=b"{}"))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(sleep)
            arrivals = await gate.wait_arrivals(10)  # all ten are in their handlers before any returns
            await gate.release_all(b"slept")
        assert len(set(arrivals)) == 10
        assert [payload_json(r) for r in responses] == ["slept"] * 10


def test_an_image_function_tenancy_and_json_logs_as_lambda_answers_them(tmp_path):
    with serving("--template", template(tmp_path), log_dir=tmp_path) as served:
        client = lambda_client(served.wait_announced())
        with pytest.raises(client.exceptions.ResourceConflictException) as image:
            client.invoke(FunctionName="ImageFunction", Payload=b"{}")
        assert "run the image" in str(image.value) and "lambdalet-rie" in str(image.value)

        with pytest.raises(client.exceptions.InvalidParameterValueException) as refused:
            client.invoke(FunctionName="TenantFunction", Payload=b"{}")
        assert "Tenant ID configuration not specified" in str(refused.value)
        with pytest.raises(client.exceptions.InvalidParameterValueException):
            client.invoke(FunctionName="HelloFunction", Payload=b"{}", TenantId="blue")
        assert payload_json(invoke(client, FunctionName="TenantFunction", Payload=b"{}", TenantId="blue"))["tenant"] == "blue"

        response = invoke(client, FunctionName="JsonLogs", Payload=b"{}")
        assert payload_json(response)["log_format"] == "JSON" and payload_json(response)["log_level"] == "DEBUG"
        request_id = response["ResponseMetadata"]["RequestId"]
    records = [json.loads(line) for line in (tmp_path / "lambdalet-serve.stdout").read_text().splitlines()
               if line.startswith("{") and request_id in line]
    start, report = [r for r in records if r["type"] in ("platform.start", "platform.report")]
    assert start["record"] == {"requestId": request_id, "version": "$LATEST",
                               "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:JsonLogs"}
    assert report["record"]["status"] == "success" and report["record"]["metrics"]["memorySizeMB"] == 128
    assert "initDurationMs" in report["record"]["metrics"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", report["time"])
    assert not any(r["type"] == "platform.runtimeDone" for r in records)  # DEBUG: below the default INFO


def lambdalet(*args: str, stdin: bytes | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*LAMBDALET, *args], input=stdin, capture_output=True, timeout=120, env=environment(), cwd=cwd)


def test_invoke_with_a_template_runs_once_without_a_server(tmp_path):
    path = template(tmp_path)
    (tmp_path / "event.json").write_text('{"x": 1}')
    (tmp_path / "env.json").write_text('{"HelloFunction": {"GREETING": "hi"}}')  # SAM's --env-vars, for one
    done = lambdalet("invoke", "hello-fn", "--template", path, "--event", str(tmp_path / "event.json"),
                     "--env-vars", str(tmp_path / "env.json"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["name"] == "hello-fn" and json.loads(done.stdout)["greeting"] == "hi"  # its FunctionName
    log = done.stderr.decode()
    assert re.search(r"^START RequestId: \S+ Version: \$LATEST$", log, re.M)
    assert re.search(r"^REPORT RequestId: .*Init Duration", log, re.M)

    failed = lambdalet("invoke", "FailFunction", "--template", path, "--event", "-", stdin=b"{}")
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "ValueError"
    assert b"failed on purpose" in failed.stderr

    missing = lambdalet("invoke", "Nope", "--template", path)
    assert missing.returncode == 2 and b"no function Nope" in missing.stderr and missing.stdout == b""
    image = lambdalet("invoke", "ImageFunction", "--template", path)
    assert image.returncode == 2 and b"ResourceConflictException" in image.stderr


@pytest.mark.parametrize("text, complaint", [
    ("Resources: [unclosed\n", "template.yaml:"),
    (json.dumps({"Resources": {"Fn": {"Type": "AWS::Serverless::Function",
                                      "Properties": {"CodeUri": "missing", "Handler": "app.handler",
                                                     "Runtime": "python3.12"}}}}),
     "function Fn: CodeUri missing"),
])
def test_a_template_that_cannot_be_served_stops_start_up_in_one_line(tmp_path, text, complaint):
    (tmp_path / "template.yaml").write_text(text)
    port = free_port()
    done = lambdalet("serve", "--template", str(tmp_path / "template.yaml"), "--port", str(port))
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert any(complaint in line for line in lines), lines
    assert all(line.startswith("lambdalet: ") for line in lines)
    with socket.socket() as probe:  # nothing was half started: the port was never bound
        probe.bind(("127.0.0.1", port))


def test_debugging_is_refused_where_no_debugger_could_reach_the_runtime(tmp_path):
    path = template(tmp_path)
    done = lambdalet("serve", "--template", path, "--function", "HelloFunction", "--debug-port", "5678",
                     "--isolation", "strict", "--port", "0")
    assert done.returncode == 2 and b"isolation strict" in done.stderr
    several = lambdalet("serve", "--template", path, "--debug-port", "5678", "--port", "0")
    assert several.returncode == 2 and b"--debug-function" in several.stderr


def test_serve_finds_the_template_in_the_current_directory(tmp_path):
    template(tmp_path)
    with serving("--function", "HelloFunction", log_dir=tmp_path, cwd=tmp_path) as served:
        client = lambda_client(served.wait_announced())
        assert payload_json(invoke(client, FunctionName="hello-fn", Payload=b"{}"))["name"] == "hello-fn"
        with pytest.raises(client.exceptions.ResourceNotFoundException):  # --function: only that one
            client.invoke(FunctionName="FailFunction", Payload=b"{}")


def test_the_bundled_sam_example_of_the_quick_start_serves_as_deployed(tmp_path):
    """README's quick start: `lambdalet serve --template examples/hello-sam/template.yaml`, then boto3."""
    with serving("--template", str(REPO / "examples" / "hello-sam" / "template.yaml"), log_dir=tmp_path) as served:
        client = lambda_client(served.wait_announced())
        for name in ("HelloWorldFunction", "local-hello-world"):
            response = payload_json(invoke(client, FunctionName=name, Payload=b'{"name": "you"}'))
            assert response["statusCode"] == 200
            assert json.loads(response["body"]) == {"message": "Hello, you!", "function": "local-hello-world"}

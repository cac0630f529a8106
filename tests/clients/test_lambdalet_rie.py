"""Real clients against `lambdalet-rie` run as a subprocess, the way an image runs AWS's RIE:
awslambdaric and the AWS docs' bash + curl bootstrap as runtimes, boto3 and curl as invokers.
Where RIE itself falls short (no X-Amz-Function-Error, a crash on concurrent invokes), the tests
assert the fixed behaviour."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from benchmarks import realparts
from client_functions import (
    PYTHON_FUNCTION, Rendezvous, big_event, invoke, lambda_client, lambdalet_rie, payload_json, process_alive,
    runtime_pids, write_bash_function, write_node_function,
)
from helpers import write_function

CURL = "/usr/bin/curl"


@pytest.fixture
def code(tmp_path):
    return write_function(tmp_path / "code", PYTHON_FUNCTION)


def awslambdaric_rie(code, tmp_path, handler: str):
    """lambdalet-rie running `python -m awslambdaric app.<handler>` in the function directory."""
    return lambdalet_rie([sys.executable, "-m", "awslambdaric", f"app.{handler}"], cwd=code, log=tmp_path / "rie.log")


def test_awslambdaric_under_lambdalet_rie_answers_boto3(code, tmp_path):
    with awslambdaric_rie(code, tmp_path, "echo") as rie:
        client = lambda_client(rie.endpoint)
        first = invoke(client, FunctionName="function", Payload=b'{"via": "lambdalet-rie"}')
        second = invoke(client, FunctionName="function", Payload=b'{"again": 2}')
    assert first["StatusCode"] == 200
    assert "FunctionError" not in first
    assert payload_json(first) == {"via": "lambdalet-rie"}
    assert payload_json(second) == {"again": 2}


def test_function_error_under_lambdalet_rie_sets_function_error(code, tmp_path):
    # RIE answers 200 without X-Amz-Function-Error (aws-lambda-runtime-interface-emulator#20).
    with awslambdaric_rie(code, tmp_path, "fail") as rie:
        response = invoke(lambda_client(rie.endpoint), FunctionName="function", Payload=b"{}")
    assert response["StatusCode"] == 200
    assert response["FunctionError"] == "Unhandled"
    error = payload_json(response)
    assert error["errorType"] == "ValueError"
    assert error["errorMessage"] == "the handler failed on purpose"


def test_concurrent_invokes_queue_instead_of_crashing(code, tmp_path):
    """RIE crashes on a second invoke while one runs; lambdalet-rie runs it after the first."""
    with ThreadPoolExecutor(2) as pool, awslambdaric_rie(code, tmp_path, "rendezvous") as rie, Rendezvous() as meeting:
        first_client, second_client = lambda_client(rie.endpoint), lambda_client(rie.endpoint)
        second_sent = threading.Event()
        second_client.meta.events.register("before-send.lambda.Invoke", lambda **_: second_sent.set())

        first = pool.submit(invoke, first_client, FunctionName="function",
                            Payload=json.dumps({"port": meeting.port, "mark": "first"}))
        assert meeting.meet() == "first"  # the first invocation holds the runtime
        second = pool.submit(invoke, second_client, FunctionName="function",
                             Payload=json.dumps({"port": meeting.port, "mark": "second"}))
        assert second_sent.wait(timeout=30), "boto3 never sent the second invoke"
        meeting.release_all()
        assert meeting.meet() == "second"
        meeting.release_all()
        results = first.result(timeout=60), second.result(timeout=60)
        assert rie.process.poll() is None, "lambdalet-rie exited"
    assert [r["StatusCode"] for r in results] == [200, 200]
    assert [payload_json(r) for r in results] == [{"mark": "first"}, {"mark": "second"}]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_lambdalet_rie_stops_its_runtime(code, tmp_path, signum):
    with runtime_pids() as pids, awslambdaric_rie(code, tmp_path, "whoami") as rie:
        pids.append(payload_json(invoke(lambda_client(rie.endpoint), FunctionName="function", Payload=b"{}"))["pid"])
        rie.process.send_signal(signum)
        assert rie.process.wait(timeout=15) == 0
        assert not process_alive(pids[0]), "the runtime is still running"


@pytest.mark.skipif(not os.access(CURL, os.X_OK), reason=f"{CURL} is not installed")
def test_curl_large_payload_with_expect_100_continue(code, tmp_path):
    body = big_event()
    (tmp_path / "event.json").write_bytes(body)
    with awslambdaric_rie(code, tmp_path, "echo") as rie:
        try:
            done = subprocess.run(
                [CURL, "-sS", "-v", "--expect100-timeout", "600", "--data-binary", f"@{tmp_path / 'event.json'}",
                 "-o", str(tmp_path / "out.json"), "-w", "%{http_code} %{size_upload}", rie.invoke_url],
                capture_output=True, text=True, timeout=60,
            )
        except subprocess.TimeoutExpired:
            pytest.fail("curl was still waiting: lambdalet-rie never answered `Expect: 100-continue`")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"200 {len(body)}"
    assert "> Expect: 100-continue" in done.stderr
    assert "\n< HTTP/1.1 100 " in done.stderr
    assert (tmp_path / "out.json").read_bytes() == body


# --- the AWS docs' bash + curl bootstrap under lambdalet-rie ----------------------------------------


@pytest.fixture
def bash_rie(tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("the bash bootstrap needs curl on PATH")
    code = write_bash_function(tmp_path / "bash")
    env = {
        "_HANDLER": "function.handler",
        "LAMBDA_TASK_ROOT": str(code),  # RIE does not set it; the base image's Dockerfile does
        "CURL_HOME": str(code),  # its .curlrc makes a missing `100 Continue` a timeout
        "AWS_LAMBDA_FUNCTION_TIMEOUT": "20",
        "TMPDIR": str(tmp_path),  # the tutorial's bootstrap leaves a mktemp file per invocation
    }
    with lambdalet_rie([str(code / "bootstrap")], cwd=code, log=tmp_path / "rie.log", env=env) as rie:
        yield rie


def test_bash_bootstrap_under_lambdalet_rie(bash_rie):
    client = lambda_client(bash_rie.endpoint)
    first = invoke(client, FunctionName="function", Payload=b'{"call": 1}')
    second = invoke(client, FunctionName="function", Payload=b'{"call": 2}')
    assert (first["StatusCode"], second["StatusCode"]) == (200, 200)
    assert (first["Payload"], second["Payload"]) == (b'{"call": 1}', b'{"call": 2}')


def test_bash_bootstrap_under_lambdalet_rie_posts_a_2_mb_response(bash_rie):
    event = big_event()
    response = invoke(lambda_client(bash_rie.endpoint), FunctionName="function", Payload=event)
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Payload"][:300]
    assert response["Payload"] == event


# --- the Node.js runtime interface client under lambdalet-rie --------------------------------------


def test_node_ric_under_lambdalet_rie(tmp_path):
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to build and run aws-lambda-ric")
    entry = realparts.node_ric() / "node_modules" / "aws-lambda-ric" / "index.mjs"  # the first build takes ~90 s
    code = write_node_function(tmp_path / "node")
    # As in an image: RIE passes the last argument on as _HANDLER; LAMBDA_TASK_ROOT is the image's.
    with lambdalet_rie(["node", str(entry), "index.handler"], cwd=code, log=tmp_path / "rie.log",
                       env={"LAMBDA_TASK_ROOT": str(code)}) as rie:
        client = lambda_client(rie.endpoint)
        responses = [invoke(client, FunctionName="function", Payload=json.dumps({"n": n})) for n in (1, 2)]
    assert [r["StatusCode"] for r in responses] == [200, 200]
    assert [payload_json(r) for r in responses] == [{"echo": {"n": 1}}, {"echo": {"n": 2}}]

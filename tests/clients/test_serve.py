"""The `lambdalet serve` command itself, run as a user runs it, driven by boto3: the bundled example
its usage hint advertises, and its promise that stopping it stops every function environment."""

from __future__ import annotations

import json
import signal

import pytest

from client_functions import PYTHON_FUNCTION, invoke, lambda_client, payload_json, process_alive, runtime_pids
from helpers import AWSLAMBDARIC, lambdalet_serve, write_function

def test_bundled_example_answers_boto3_as_the_usage_hint_says(tmp_path):
    with lambdalet_serve(log_dir=tmp_path) as serve:
        endpoint = serve.wait_announced()
        hint = serve.stderr
        response = invoke(lambda_client(endpoint), FunctionName="hello", Payload=b'{"name": "you"}')
        assert serve.stop(signal.SIGTERM) == 0
    assert f"endpoint_url='{endpoint}'" in hint and "FunctionName='hello'" in hint
    assert response["StatusCode"] == 200
    assert "FunctionError" not in response, response["Payload"]
    result = payload_json(response)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["message"] == "Hello, you!"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_lambdalet_serve_stops_every_environment(tmp_path, signum):
    code = write_function(tmp_path / "code", PYTHON_FUNCTION)
    args = ["--code", str(code), "--handler", "app.whoami", "--", *AWSLAMBDARIC, "app.whoami"]
    with runtime_pids() as pids, lambdalet_serve(*args, log_dir=tmp_path) as serve:
        client = lambda_client(serve.wait_announced())
        pids.append(payload_json(invoke(client, FunctionName="function", Payload=b"{}"))["pid"])
        assert process_alive(pids[0])
        serve.stop(signum)
        assert not process_alive(pids[0]), "the environment's runtime is still running"


def test_ctrl_c_stops_lambdalet_serve_cleanly(tmp_path):
    code = write_function(tmp_path / "code", PYTHON_FUNCTION)
    args = ["--code", str(code), "--handler", "app.whoami", "--", *AWSLAMBDARIC, "app.whoami"]
    with lambdalet_serve(*args, log_dir=tmp_path) as serve:
        client = lambda_client(serve.wait_announced())
        invoke(client, FunctionName="function", Payload=b"{}")
        status = serve.stop(signal.SIGINT)
    assert "Traceback" not in serve.stderr
    assert status == 0

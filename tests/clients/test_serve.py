"""The `lambdalet serve` command itself, run as a user runs it, driven by boto3: the bundled example
its usage hint advertises, and its promise that stopping it stops every function environment."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

import pytest

from benchmarks.common import stop_process
from client_functions import PYTHON_FUNCTION, invoke, lambda_client, payload_json, process_alive, runtime_pids
from helpers import AWSLAMBDARIC, write_function

class ServeProcess:
    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.stderr_lines: list[str] = []
        self.endpoint: str | None = None
        self._announced = threading.Event()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_lines.append(line)
            found = re.match(r"lambdalet: Invoke API on (http://\S+)", line)
            if found:
                self.endpoint = found[1]
                self._announced.set()
        self._announced.set()  # it exited: wake the waiter

    def wait_announced(self, limit: float = 30) -> str:
        """The endpoint lambdalet prints once it is listening: readiness it reports itself."""
        self._announced.wait(limit)
        assert self.endpoint is not None, f"lambdalet serve did not start:\n{self.stderr}"
        return self.endpoint

    def stop(self, signum: int, limit: float = 15) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=limit)
        finally:
            self._reader.join(timeout=limit)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


@contextmanager
def lambdalet_serve(*args: str, log_dir):
    """`lambdalet serve --port 0 ARGS...` (the kernel picks the port; lambdalet announces it)."""
    with open(log_dir / "lambdalet-serve.stdout", "wb") as stdout:
        process = subprocess.Popen([sys.executable, "-m", "runtime_api.cli", "serve", "--port", "0", *args],
                                   stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    serve = ServeProcess(process)
    try:
        yield serve
    finally:
        stop_process(process, 10)  # lambdalet stops its environments on SIGTERM
        print(f"--- lambdalet serve stderr ---\n{serve.stderr[-20000:]}")


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

"""What the real-client tests (tests/clients/) run and how they meet it.

* Function sources: one awslambdaric module with a handler per behaviour, the AWS docs' bash +
  curl custom runtime, and a Node.js module for `aws-lambda-ric`.
* `lambda_client`, `invoke`: a boto3 `lambda` client as a user would configure it (no retries),
  and its `invoke` with the payload read before the test can stop the server.
* `Rendezvous`: a loopback listener a handler connects to while it runs, so a test learns that
  the handler *is* running and decides when it may return: events, not sleeps.
* `runtime_pids`, `process_alive`: runtimes must not outlive the lambdalet that started them.
* `lambdalet_rie`: `lambdalet-rie` as a subprocess on free ports, always stopped.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from benchmarks.common import free_port, stop_process

# --- function sources ----------------------------------------------------------------------------

PYTHON_FUNCTION = '''
import json
import os
import socket
import sys
import time


def echo(event, context):
    print(f"echo handler saw {json.dumps(event)}")
    return event


def chatty(event, context):
    for line in range(40):
        print(f"line {line:02d} " + "x" * 200)
    return "said a lot"


def fail(event, context):
    raise ValueError("the handler failed on purpose")


def exit_3(event, context):
    if event.get("exit"):
        sys.exit(3)
    return "still here"


def maybe_slow(event, context):
    time.sleep(event.get("sleep", 0))
    return "done"


def client_context(event, context):
    return context.client_context.custom


invocations = 0


def count(event, context):
    """How many invocations this environment has run (module state survives warm invocations)."""
    global invocations
    invocations += 1
    if event.get("exit"):
        sys.exit(1)
    return invocations


def describe(event, context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": str(context.memory_limit_in_mb),
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "region": os.environ.get("AWS_REGION"),
        "greeting": os.environ.get("GREETING"),
    }


def trace_id(event, context):
    return os.environ.get("_X_AMZN_TRACE_ID")


def too_big(event, context):
    return "x" * (7 * 1024 * 1024)


def record(event, context):
    """Append the event's mark to a file in event['dir'] and return every mark so far; when the
    event names a rendezvous port, meet the test there before returning."""
    path = os.path.join(event["dir"], "marks")
    with open(path, "a") as marks:
        marks.write(event["mark"] + "\\n")
    if "port" in event:
        meet(event)
    with open(path) as marks:
        return marks.read().split()


def whoami(event, context):
    return {"pid": os.getpid()}


def rendezvous(event, context):
    meet(event)
    return {"mark": event["mark"]}


def meet(event):
    """Tell the test this handler is running, then wait until the test lets it go on."""
    with socket.create_connection(("127.0.0.1", event["port"])) as conn:
        conn.sendall(event["mark"].encode() + b"\\n")
        conn.recv(1)
'''

IMPORT_ERROR_FUNCTION = '''
import module_that_is_not_installed  # noqa: F401


def handler(event, context):
    return "unreachable"
'''

# The custom runtime of the AWS Lambda developer guide ("Tutorial: Building a custom runtime"), kept
# once for every test that runs it (the conformance suite's copy).
BASH_BOOTSTRAP = (Path(__file__).resolve().parent.parent / "conformance" / "runtimes" / "bootstrap.sh").read_text()

BASH_FUNCTION = '''function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA"
}

function fail () {
  echo "fail: giving up on $1" 1>&2
  return 1
}
'''

# The tutorial's own function.sh, word for word: its response is text, not JSON.
TUTORIAL_FUNCTION = '''function handler () {
  EVENT_DATA=$1
  echo "$EVENT_DATA" 1>&2;
  RESPONSE="Echoing request: '$EVENT_DATA'"

  echo $RESPONSE
}
'''

# curl sends `Expect: 100-continue` with a large body and, by default, sends the body anyway
# after waiting 1 s for the `100 Continue`: a server that never answers would only be slower.
# With this .curlrc (found through CURL_HOME) curl waits for the answer far longer than any
# test's function timeout, so a server that never answers makes the invocation time out.
CURLRC = "expect100-timeout = 600\n"

NODE_FUNCTION = '''
import net from "node:net";

export const handler = async (event) => ({ echo: event });

export const context = async (event, context) => ({
  functionName: context.functionName,
  invokedFunctionArn: context.invokedFunctionArn,
  awsRequestId: context.awsRequestId,
  custom: context.clientContext?.Custom ?? context.clientContext?.custom ?? null,
});

export const slow = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, (event.sleep ?? 0) * 1000));
  return "done";
};

export const tooBig = async () => "x".repeat(7 * 1024 * 1024);

export const fail = async (event) => {
  throw new Error("the node handler failed on purpose");
};

export const stream = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.write("first chunk;");
  responseStream.write("second chunk");
  responseStream.end();
});

// Streams its first chunk, meets the test (as `meet` in PYTHON_FUNCTION), then streams the rest.
export const streamMeeting = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.write("first chunk;");
  await new Promise((resolve, reject) => {
    const conn = net.connect(event.port, "127.0.0.1", () => conn.write(event.mark + "\\n"));
    conn.on("data", () => { conn.end(); resolve(); });
    conn.on("end", resolve);
    conn.on("error", reject);
  });
  responseStream.write("second chunk");
  responseStream.end();
});
'''


def write_bash_function(directory: Path) -> Path:
    """The tutorial's `bootstrap`, its `function.sh` as `tutorial.sh` (handler `tutorial.handler`), a
    `function.sh` whose `handler` echoes the event and whose `fail` fails, and a .curlrc."""
    directory.mkdir(parents=True, exist_ok=True)
    bootstrap = directory / "bootstrap"
    bootstrap.write_text(BASH_BOOTSTRAP)
    bootstrap.chmod(bootstrap.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (directory / "function.sh").write_text(BASH_FUNCTION)
    (directory / "tutorial.sh").write_text(TUTORIAL_FUNCTION)
    (directory / ".curlrc").write_text(CURLRC)
    return directory


def write_node_function(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "index.mjs").write_text(NODE_FUNCTION)
    return directory


def big_event(size: int = 2 * 1024 * 1024) -> bytes:
    """A JSON event of about `size` bytes in the form json.dumps writes (so an echo is byte-equal)."""
    return json.dumps({"data": "x" * size}).encode()


# --- clients -------------------------------------------------------------------------------------


def lambda_client(endpoint: str, *, read_timeout: float = 60):
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # One attempt, no retries: botocore's `max_attempts` counts retries on top of the first
        # attempt, and a retried invoke runs the function twice.
        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=5),
    )


def invoke(client, **params) -> dict:
    """`client.invoke(**params)` with the payload read at once (botocore streams it, and a body
    left unread would be cut off when the test stops the server)."""
    response = client.invoke(**params)
    response["Payload"] = response["Payload"].read()
    return response


def payload_json(response: dict) -> object:
    return json.loads(response["Payload"])


class Rendezvous:
    """A loopback listener a handler connects to (see `meet` in PYTHON_FUNCTION): `meet()` returns
    the mark of the next handler that arrived; the handler waits until `release_all()`."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(timeout)
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []

    def meet(self) -> str:
        try:
            conn, _ = self._listener.accept()
        except TimeoutError:
            raise AssertionError(f"no handler arrived within {self.timeout} s") from None
        conn.settimeout(self.timeout)
        self._held.append(conn)
        with conn.makefile("rb") as reader:
            return reader.readline().decode().strip()

    def release_all(self) -> None:
        for conn in self._held:
            try:
                conn.sendall(b"x")
            except OSError:
                pass
            conn.close()
        self._held.clear()

    def close(self) -> None:
        self.release_all()
        self._listener.close()

    def __enter__(self) -> Rendezvous:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- processes ------------------------------------------------------------------------------------


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as proc_stat:
            return proc_stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@contextmanager
def runtime_pids():
    """Collects the pids of runtimes a test saw; any still alive at the end are killed (and fail it).
    lambdalet promises that nothing it started outlives it."""
    pids: list[int] = []
    try:
        yield pids
    finally:
        leftover = [pid for pid in pids if process_alive(pid)]
        for pid in leftover:
            try:
                os.killpg(pid, signal.SIGKILL)  # runtimes lead their own process group
            except ProcessLookupError:
                pass
    assert not leftover, f"runtime processes outlived the lambdalet that started them: {leftover}"


# --- lambdalet-rie as a subprocess ---------------------------------------------------------------


@dataclass(frozen=True)
class RieProcess:
    process: subprocess.Popen
    endpoint: str  # http://127.0.0.1:PORT
    log: Path  # lambdalet-rie's stdout and stderr, with the runtime's

    @property
    def invoke_url(self) -> str:
        return f"{self.endpoint}/2015-03-31/functions/function/invocations"


@contextmanager
def lambdalet_rie(command: list[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None):
    """Run `python -m runtime_api.rie` with `command` as the bootstrap, on free loopback ports;
    yield once its invoke port accepts connections; always stop it (SIGTERM, then SIGKILL)."""
    invoke_port, api_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "runtime_api.rie",
        "--runtime-interface-emulator-address", f"127.0.0.1:{invoke_port}",
        "--runtime-api-address", f"127.0.0.1:{api_port}",
        *command,
    ]
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})},
                                   stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_accepting(process, invoke_port, log)
        yield RieProcess(process, f"http://127.0.0.1:{invoke_port}", log)
    finally:
        stop_process(process, 10)
        # Captured by pytest and shown only when the test failed.
        print(f"--- lambdalet-rie output ---\n{log.read_text(errors='replace')[-20000:]}")


def _wait_accepting(process: subprocess.Popen, port: int, log: Path, limit: float = 30.0) -> None:
    """Retry connecting until the port accepts: readiness is the listener, observed, not guessed."""
    deadline = time.monotonic() + limit
    while True:
        if process.poll() is not None:
            raise AssertionError(f"lambdalet-rie exited with {process.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"lambdalet-rie did not listen on {port} within {limit} s:\n{log.read_text()}")
            time.sleep(0.02)



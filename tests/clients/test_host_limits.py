"""The host's limits (issue 19): when a new environment would need more than the host gives (here,
open files), the invocation is refused with Lambda's TooManyRequestsException (429), the log says
which limit it was, the environments already running finish their invocations, and the server
serves on (sandbox/hostlimits.py)."""

from __future__ import annotations

import http.client
import json
import resource
import subprocess
import sys
from urllib.parse import urlsplit

import trio

from helpers import Gate, ServeProcess, running_server, write_function
from runtime_api import FunctionConfig

OPEN_FILES = 100  # the server's hard limit in this test: a few dozen environments' worth
HANDLER = Gate.handler_snippet + '''
import resource

def handler(event, context):
    if event.get("gate"):
        wait_at_gate(context)
    return {"open_files": resource.getrlimit(resource.RLIMIT_NOFILE)}
'''


def post(endpoint: str, payload: dict) -> tuple[int, dict]:
    url = urlsplit(endpoint)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        connection.request("POST", "/2015-03-31/functions/function/invocations", body=json.dumps(payload))
        response = connection.getresponse()
        return response.status, {"error": response.getheader("X-Amz-Function-Error"),
                                 "type": response.getheader("X-Amzn-ErrorType"), "body": json.loads(response.read())}
    finally:
        connection.close()


def limited(soft_and_hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft_and_hard, soft_and_hard))


async def test_at_the_hosts_open_files_limit_new_environments_get_429_and_the_server_serves_on(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    held: list[dict] = []
    async with trio.open_nursery() as nursery:
        gate = await Gate().start(nursery)
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime_api.cli", "serve", "--port", "0", "--code", str(code),
             "--handler", "app.handler", "--concurrency", "500", "--timeout", "120", "--isolation", "none",
             "--state-dir", str(tmp_path / "state"), "--env", f"GATE_PORT={gate.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            preexec_fn=limited(OPEN_FILES))
        serve = ServeProcess(process)
        try:
            endpoint = await trio.to_thread.run_sync(serve.wait_announced)
            threads = trio.CapacityLimiter(1000)
            refused = None
            async with trio.open_nursery() as calls:
                # One gated invocation at a time, each held in its own environment, until one is refused.
                while refused is None:
                    assert len(held) < OPEN_FILES, "no invocation was refused"
                    answered = trio.Event()
                    answer: dict = {}

                    async def call(answer=answer, answered=answered) -> None:
                        answer["reply"] = await trio.to_thread.run_sync(post, endpoint, {"gate": True},
                                                                        limiter=threads)
                        answered.set()

                    calls.start_soon(call)
                    async with trio.open_nursery() as race:  # it reached its handler, or it was answered
                        async def arrived(count=len(held) + 1) -> None:
                            await gate.wait_arrivals(count)
                            race.cancel_scope.cancel()

                        async def replied(answered=answered) -> None:
                            await answered.wait()
                            race.cancel_scope.cancel()

                        race.start_soon(arrived)
                        race.start_soon(replied)
                    if answered.is_set():
                        refused = answer["reply"]
                    else:
                        held.append(answer)
                await gate.release_all()
            after = await trio.to_thread.run_sync(post, endpoint, {})
        finally:
            process.terminate()
            await trio.to_thread.run_sync(process.wait)
            nursery.cancel_scope.cancel()
    status, body = refused
    assert (status, body["type"], body["body"]["Type"]) == (429, "TooManyRequestsException", "User"), refused
    assert len(held) >= 5  # environments ran before the limit was reached
    for answer in held:  # and finished their invocations
        assert answer["reply"][0] == 200 and answer["reply"][1]["error"] is None, answer
    # A runtime's limit on open files is never above the server's (Lambda's otherwise: below).
    assert held[0]["reply"][1]["body"]["open_files"] == [OPEN_FILES, OPEN_FILES]
    assert after[0] == 200 and after[1]["error"] is None, after
    assert "the host's limit on open files is reached" in serve.stderr, serve.stderr[-3000:]


async def test_a_runtime_has_lambdas_limit_on_open_files_not_the_servers(tmp_path):
    """The server raises its own soft limit to the hard one for its many environments; each runtime
    gets Lambda's quota, 1,024 ("Lambda quotas", AWS Lambda Developer Guide)."""
    code = write_function(tmp_path, HANDLER)
    async with running_server(FunctionConfig(name="function", code=str(code), handler="app.handler")) as server:
        result = await server.invoke("function", b"{}")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert json.loads(result.payload)["open_files"] == [min(1024, hard)] * 2
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard  # the server's (here, the test's) raised

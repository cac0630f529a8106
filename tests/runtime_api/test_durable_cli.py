"""`lambdalet durable` (list, get, history, callback, stop) and the AWS CLI's `aws lambda`
durable execution commands against a server's Lambda API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import trio

from durable_helpers import call, client, file_appears, function, serving, until_ended, until_in_history

from helpers import REPO


async def lambdalet(server, *argv: str) -> subprocess.CompletedProcess:
    return await trio.run_process([sys.executable, "-m", "runtime_api.cli", "durable", "--endpoint", server.endpoint,
                                   *argv], capture_stdout=True, capture_stderr=True, check=False,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})


async def test_lambdalet_durable_lists_completes_a_callback_reads_history_and_stops(tmp_path):
    async with serving(function(tmp_path, "callback", "callback"), function(tmp_path, "long", "long_wait")) as server:
        lam = client(server)
        arn = (await call(lam.invoke, FunctionName="callback", InvocationType="Event",
                          Payload=b'{"timeout": 3600}'))["DurableExecutionArn"]
        await until_in_history(lam, arn, ("InvocationCompleted", None))
        listed = await lambdalet(server, "list", "callback", "--status", "RUNNING")
        assert listed.returncode == 0 and "RUNNING" in listed.stdout.decode() and arn in listed.stdout.decode()
        callback_id = json.loads(await file_appears(tmp_path / "callback"))
        done = await lambdalet(server, "callback", "succeed", callback_id, "from the cli")
        assert done.returncode == 0, done.stderr
        assert json.loads((await until_ended(lam, arn))["Result"]) == {"approved": "from the cli"}
        again = await lambdalet(server, "callback", "succeed", callback_id, "twice")
        assert again.returncode == 1
        assert "InvalidParameterValueException: The callback has already completed" in again.stderr.decode()
        shown = (await lambdalet(server, "history", arn)).stdout.decode().splitlines()
        assert [line.split()[3] for line in shown] == ["ExecutionStarted", "CallbackStarted", "InvocationCompleted",
                                                       "CallbackSucceeded", "InvocationCompleted", "ExecutionSucceeded"]
        as_json = json.loads((await lambdalet(server, "--json", "history", arn)).stdout)
        assert as_json["Events"][3]["CallbackSucceededDetails"]["Result"]["Payload"] == "from the cli"

        long_arn = (await call(lam.invoke, FunctionName="long", InvocationType="Event",
                               Payload=b"{}"))["DurableExecutionArn"]
        await until_in_history(lam, long_arn, ("InvocationCompleted", None))
        stopped = await lambdalet(server, "stop", long_arn, "--error-message", "enough")
        assert stopped.returncode == 0
        got = json.loads((await lambdalet(server, "get", long_arn)).stdout)
        assert got["Status"] == "STOPPED" and got["Error"]["ErrorMessage"] == "enough"
        missing = await lambdalet(server, "get", long_arn + "x")
        assert missing.returncode == 1 and "ResourceNotFoundException" in missing.stderr.decode()


async def test_the_aws_cli_reads_an_execution_and_its_history(tmp_path):
    async with serving(function(tmp_path, "steps", "steps_and_wait")) as server:
        lam = client(server)
        answer = await call(lam.invoke, FunctionName="steps", Payload=b'{"x": 1}')
        arn = answer["DurableExecutionArn"]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
        aws = [sys.executable, "-m", "awscli", "lambda", "--endpoint-url", server.endpoint, "--output", "json"]
        got = await trio.run_process([*aws, "get-durable-execution", "--durable-execution-arn", arn],
                                     capture_stdout=True, env=env)
        assert json.loads(got.stdout)["Status"] == "SUCCEEDED"
        events = await trio.run_process([*aws, "get-durable-execution-history", "--durable-execution-arn", arn],
                                        capture_stdout=True, env=env)
        assert [event["EventType"] for event in json.loads(events.stdout)["Events"]][-1] == "ExecutionSucceeded"

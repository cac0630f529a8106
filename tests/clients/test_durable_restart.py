"""A durable execution survives `lambdalet serve` killed with SIGKILL while it waits: restarted on
the same state directory, the server finds the execution, fires its wait's timer and re-invokes
it, and the execution completes with nothing lost from its history. The handler is written with
AWS's durable execution SDK (tests/runtime_api/durable_handlers/app.py)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import boto3
import botocore.config
import pytest

from benchmarks.common import Server, free_port, kill_tree
from benchmarks.postgres import PostgresMissing, running_postgres
from helpers import wait_until

pytest.importorskip("aws_durable_execution_sdk_python", reason="the durable execution SDK is in the test extra")

HANDLERS = Path(__file__).resolve().parent.parent / "runtime_api" / "durable_handlers"


def serve(tmp_path: Path, name: str, port: int, *where: str) -> Server:
    config = tmp_path / "lambdalet.toml"
    config.write_text(f"""
[[function]]
name = "restartable"
code = {json.dumps(str(HANDLERS))}
handler = "app.restartable"
runtime = {json.dumps([sys.executable, "-m", "awslambdaric", "app.restartable"])}
isolation = "none"
timeout = 30
env = {{ OUT = {json.dumps(str(tmp_path))} }}
durable = {{ execution_timeout = 3600, retention_days = 1 }}
""")
    argv = [sys.executable, "-m", "runtime_api.cli", "serve", "--config", str(config), "--port", str(port),
            *(where or ("--state-dir", str(tmp_path / "state"))), "--durable-time-scale", "0.01"]
    return Server(name, argv, tmp_path, port, log_dir=tmp_path)


def client(port: int):
    return boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=botocore.config.Config(retries={"max_attempts": 0}))


def outline(lam, arn: str) -> list[tuple[str, str | None]]:
    events = lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
    return [(event["EventType"], None if event["EventType"].startswith("Execution") else event.get("Name"))
            for event in events]



WHOLE = [("ExecutionStarted", None), ("StepStarted", "before"), ("StepSucceeded", "before"),
         ("WaitStarted", "through-the-restart"), ("InvocationCompleted", None),
         ("WaitSucceeded", "through-the-restart"), ("StepStarted", "after"), ("StepSucceeded", "after"),
         ("InvocationCompleted", None), ("ExecutionSucceeded", None)]


def start_then_kill(first: Server, port: int) -> str:
    """An execution started on `first`, which is killed with SIGKILL once it waits: its ARN."""
    try:
        lam = client(port)
        arn = lam.invoke(FunctionName="restartable", InvocationType="Event", Payload=b"{}")["DurableExecutionArn"]
        wait_until(lambda: ("InvocationCompleted", None) in outline(lam, arn), "the execution to suspend in its wait")
        first.snapshot()
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        kill_tree(list(first.known.values()))
    finally:
        first.stop()
    return arn


def completes(lam, arn: str) -> None:
    wait_until(lambda: lam.get_durable_execution(DurableExecutionArn=arn)["Status"] != "RUNNING", "the execution to end")
    ended = lam.get_durable_execution(DurableExecutionArn=arn)
    assert ended["Status"] == "SUCCEEDED" and json.loads(ended["Result"]) == ["before", "after"]
    assert outline(lam, arn) == WHOLE


def test_an_execution_waiting_when_the_server_is_killed_completes_after_a_restart(tmp_path):
    port = free_port()
    arn = start_then_kill(serve(tmp_path, "first", port).start(), port)
    with serve(tmp_path, "second", port) as second:
        completes(client(port), arn)
        assert "1 durable execution(s) left running by a server that stopped: they go on" in second.stderr_tail(10_000)


def test_with_a_shared_postgresql_queue_another_server_takes_the_execution_over(tmp_path):
    try:
        postgres = running_postgres()
        url = postgres.__enter__()
    except PostgresMissing as exc:
        pytest.skip(str(exc))
    try:
        where = ("--queue", url, "--queue-lease", "2")
        port, other_port = free_port(), free_port()
        with serve(tmp_path, "other", other_port, *where) as other:
            arn = start_then_kill(serve(tmp_path, "first", port, *where).start(), port)
            completes(client(other_port), arn)  # once the killed server's lease has run out
            assert "1 durable execution(s) of a server that stopped go on here" in other.stderr_tail(10_000)
    finally:
        postgres.__exit__(None, None, None)

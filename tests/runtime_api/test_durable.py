"""Durable functions written with AWS's durable execution SDK (aws-durable-execution-sdk-python),
run by an in-process server and driven with boto3: each execution's result, and its history from
GetDurableExecutionHistory event by event. Waits, retry delays and timeouts run on a time scale
of 0.01 (a minute lasts 0.6 s). The handlers are in durable_handlers/app.py; the runtime is
awslambdaric on this Python, which has the SDK installed (the test extra)."""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import boto3
import botocore.config
import pytest
import trio

from runtime_api import FunctionConfig, ServerConfig
from runtime_api.config import DurableSettings
from runtime_api.server import Server

from helpers import CapturedLog

pytest.importorskip("aws_durable_execution_sdk_python", reason="the durable execution SDK is in the test extra")

SCALE = 0.01
HANDLERS = Path(__file__).parent / "durable_handlers"


def function(tmp_path: Path, name: str, handler: str, durable: bool = True, **settings) -> FunctionConfig:
    return FunctionConfig(name=name, code=str(HANDLERS), handler=f"app.{handler}",
                          runtime=[sys.executable, "-m", "awslambdaric", f"app.{handler}"], isolation="none",
                          timeout=30, env={"OUT": str(tmp_path)},
                          durable=DurableSettings(**settings) if durable else None)


@asynccontextmanager
async def serving(*functions: FunctionConfig, **settings):
    config = ServerConfig(port=0, durable_time_scale=SCALE, function=list(functions), **settings)
    async with Server(config, sink=CapturedLog()) as server:
        yield server


def client(server: Server):
    return boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x",
                        config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=120))


async def call(fn, *args, **kwargs):
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def history(lam, arn: str) -> list[dict]:
    answer = await call(lam.get_durable_execution_history, DurableExecutionArn=arn, IncludeExecutionData=True)
    return answer["Events"]


def outline(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(event["EventType"], event.get("Name")) for event in events]


def details(events: list[dict], event_type: str, name: str | None = None) -> dict:
    return next(event[f"{event_type}Details"] for event in events
                if event["EventType"] == event_type and event.get("Name") == name)


async def file_appears(path: Path) -> str:
    """The file a handler writes (renamed into place whole), once it is there."""
    while not path.exists():
        await trio.sleep(0.01)
    return path.read_text()


async def test_steps_and_a_wait_complete_with_their_history_event_by_event(tmp_path):
    async with serving(function(tmp_path, "steps", "steps_and_wait")) as server:
        lam = client(server)
        answer = await call(lam.invoke, FunctionName="steps", Payload=b'{"x": 1}')
        assert json.loads(answer["Payload"].read()) == {"result": 4}
        arn = answer["DurableExecutionArn"]
        assert arn.startswith("arn:aws:lambda:us-east-1:123456789012:function:steps:$LATEST/durable-execution/")
        events = await history(lam, arn)
    assert outline(events) == [
        ("ExecutionStarted", None),
        ("StepStarted", "add"), ("StepSucceeded", "add"),
        ("WaitStarted", "pause"),
        ("InvocationCompleted", None),  # suspended: the wait is the service's now
        ("WaitSucceeded", "pause"),
        ("StepStarted", "double"), ("StepSucceeded", "double"),
        ("InvocationCompleted", None),
        ("ExecutionSucceeded", None),
    ]
    assert [event["EventId"] for event in events] == list(range(1, 11))
    assert details(events, "ExecutionStarted")["Input"]["Payload"] == '{"x": 1}'
    assert details(events, "StepSucceeded", "add")["Result"]["Payload"] == "2"
    assert details(events, "WaitStarted", "pause")["Duration"] == 30
    assert details(events, "WaitSucceeded", "pause")["Duration"] == 30
    assert details(events, "ExecutionSucceeded")["Result"]["Payload"] == '{"result": 4}'

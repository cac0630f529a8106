"""What the durable function tests share: an in-process server serving the handlers of
tests/runtime_api/durable_handlers/app.py (awslambdaric on this Python, which has AWS's SDK from
the test extra), a boto3 client, and readers of an execution's history."""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import boto3
import botocore.config
import trio

from helpers import CapturedLog
from runtime_api import FunctionConfig, ServerConfig
from runtime_api.config import DurableSettings
from runtime_api.server import Server

HANDLERS = Path(__file__).resolve().parent / "runtime_api" / "durable_handlers"
SCALE = 0.01


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
    """(type, operation name) of each event; the execution's own events (named after it) as None."""
    return [(event["EventType"], None if event["EventType"].startswith("Execution") else event.get("Name"))
            for event in events]


def details(events: list[dict], event_type: str, name: str | None = None) -> dict:
    return next(event[f"{event_type}Details"] for event in events
                if (event["EventType"], None if event_type.startswith("Execution") else event.get("Name"))
                == (event_type, name))


async def file_appears(path: Path) -> str:
    """The file a handler writes (renamed into place whole), once it is there."""
    while not path.exists():
        await trio.sleep(0.01)
    return path.read_text()


async def run_and_show(tmp_path, handler: str, payload: dict, *extra: FunctionConfig):
    async with serving(function(tmp_path, handler, handler), *extra) as server:
        lam = client(server)
        answer = await call(lam.invoke, FunctionName=handler, Payload=json.dumps(payload).encode())
        events = await history(lam, answer["DurableExecutionArn"])
        return answer, json.loads(answer["Payload"].read()), events


def per_operation(events: list[dict]) -> dict[str, list[str]]:
    """Each operation's events in order (operations that run side by side interleave freely)."""
    found: dict[str, list[str]] = {}
    for event in events:
        if event.get("Name") is not None and not event["EventType"].startswith("Execution"):
            found.setdefault(event["Name"], []).append(event["EventType"])
    return found


async def until_in_history(lam, arn: str, wanted: tuple[str, str | None]) -> list[dict]:
    """The history once it holds `wanted` (an execution's progress, as a client sees it)."""
    while wanted not in outline(events := await history(lam, arn)):
        await trio.sleep(0.02)
    return events


async def until_ended(lam, arn: str) -> dict:
    while (found := await call(lam.get_durable_execution, DurableExecutionArn=arn))["Status"] == "RUNNING":
        await trio.sleep(0.02)
    return found

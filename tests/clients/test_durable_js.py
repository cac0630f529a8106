"""A durable function written with AWS's durable execution SDK for JavaScript
(`@aws/durable-execution-sdk-js`, from npm), run by the Node.js runtime interface client
(`aws-lambda-ric`) under lambdalet: a step, a wait, a callback completed with boto3, another step,
and its history event by event."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import trio

from benchmarks import realparts
from runtime_api import FunctionConfig
from runtime_api.config import DurableSettings

from durable_helpers import call, client, file_appears, history, outline, serving, until_ended

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def node_parts():
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Node.js runtime client and the JavaScript SDK")
    entry = realparts.node_ric() / "node_modules" / "aws-lambda-ric" / "index.mjs"  # the first build takes ~90 s
    return entry, realparts.durable_js_sdk() / "node_modules"


async def test_a_javascript_durable_function_waits_takes_a_callback_and_completes(tmp_path, node_parts):
    entry, modules = node_parts
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(HERE / "durable_js" / "index.mjs", code / "index.mjs")
    (code / "node_modules").symlink_to(modules)  # where an ES module's imports are looked for
    function = FunctionConfig(name="js", code=str(code), handler="index.handler",
                              runtime=["node", str(entry), "index.handler"], isolation="none", timeout=30,
                              env={"OUT": str(tmp_path)}, durable=DurableSettings())
    async with serving(function) as server:
        lam = client(server)
        arn = (await call(lam.invoke, FunctionName="js", InvocationType="Event",
                          Payload=b'{"x": 1}'))["DurableExecutionArn"]
        callback_id = json.loads(await file_appears(tmp_path / "callback"))
        events = await history(lam, arn)
        while outline(events).count(("InvocationCompleted", None)) < 2:  # after the wait, suspended on the callback
            await trio.sleep(0.02)
            events = await history(lam, arn)
        await call(lam.send_durable_execution_callback_success, CallbackId=callback_id, Result=b'"yes"')
        ended = await until_ended(lam, arn)
        assert ended["Status"] == "SUCCEEDED"
        assert json.loads(ended["Result"]) == {"result": 4, "approval": '"yes"'}  # the SDK passes a result through
        events = await history(lam, arn)
    # The JavaScript SDK's waitForCallback is a child context holding the callback and a step that
    # runs the submitter (which writes the callback id for this test).
    assert outline(events) == [
        ("ExecutionStarted", None), ("StepStarted", "add"), ("StepSucceeded", "add"), ("WaitStarted", "pause"),
        ("InvocationCompleted", None), ("WaitSucceeded", "pause"), ("ContextStarted", "approval"),
        ("CallbackStarted", None), ("StepStarted", None), ("StepSucceeded", None), ("InvocationCompleted", None),
        ("CallbackSucceeded", None), ("ContextSucceeded", "approval"), ("StepStarted", "double"),
        ("StepSucceeded", "double"), ("InvocationCompleted", None), ("ExecutionSucceeded", None)]

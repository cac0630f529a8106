"""The same durable handlers run by lambdalet and by AWS's local runner (the
aws-durable-execution-sdk-python-testing library's DurableFunctionTestRunner, in process): the
same result or error, and the same history, event by event, with each event's payloads, errors,
retry details and durations.

The differences, each allowed for below and said in the README:
* Events of operations running side by side (map items, parallel branches, a chained invoke
  that ends while the handler is still running) come in whichever order they happened, on each.
* A poll of wait_for_condition that asks for another (a RETRY without an error): the local runner's
  StepSucceeded leaves out the state the poll checkpointed; lambdalet's carries it (the payload
  the SDK sent).
* InvocationCompleted: the local runner gives no details; lambdalet gives the service model's
  StartTimestamp, EndTimestamp and RequestId.
* A chained invoke of a durable function: the local runner names the child execution in
  ChainedInvokeStarted (DurableExecutionArn); lambdalet starts the child after the event is written.
* ExecutionStarted's ExecutionTimeout is each side's own setting.
"""

from __future__ import annotations

import json
import sys

import pytest
import trio

from durable_helpers import HANDLERS, function, run_and_show

pytest.importorskip("aws_durable_execution_sdk_python_testing", reason="AWS's local runner is in the test extra")

CONCURRENT = {"parallel_and_map", "chained"}


def local_run(tmp_path, handler: str, payload: dict) -> tuple[str, object, dict | None, list[dict]]:
    """(status, result, error, history events) from AWS's local runner."""
    from aws_durable_execution_sdk_python_testing.runner import DurableFunctionTestRunner

    sys.path.insert(0, str(HANDLERS))
    try:
        import app
    finally:
        sys.path.remove(str(HANDLERS))
    out = tmp_path / "local"
    out.mkdir()
    app.OUT = out  # its files apart from lambdalet's run
    with DurableFunctionTestRunner(handler=getattr(app, handler)) as runner:
        runner.register_function("plain", app.plain).register_durable_function("steps", app.steps_and_wait)
        arn = runner.run_async(input=json.dumps(payload), execution_timeout=120)
        result = runner.wait_for_result(execution_arn=arn, timeout=120)
        events = [event.to_dict() for event in runner.get_execution_history(arn, include_execution_data=True).events]
    error = result.error and {"ErrorType": result.error.type, "ErrorMessage": result.error.message}
    return result.status.value, json.loads(result.result) if result.result else None, error, events


def essence(events: list[dict], handler: str) -> list[tuple]:
    """What both must agree on, event by event."""
    found = []
    for event in events:
        kind = event["EventType"]
        details = dict(event.get(f"{kind}Details") or {})
        name = None if kind.startswith("Execution") else event.get("Name")
        kept = {key: details[key] for key in ("RetryDetails", "Duration", "CallbackId", "FunctionName")
                if key in details}
        for key in ("Result", "Error", "Input"):
            if key in details and kind not in ("ExecutionStarted",):
                kept[key] = details[key].get("Payload")
        if handler == "wait_for_condition" and kind == "StepSucceeded" and "RetryDetails" in kept:
            kept.pop("Result", None)  # the local runner leaves the polled state out (see the docstring)
        if kind == "InvocationCompleted":
            kept = {}
        found.append((kind, name, json.dumps(kept, sort_keys=True)))
    return sorted(found) if handler in CONCURRENT else found


CASES = [("steps_and_wait", {"x": 1}), ("retries", {}), ("failing", {}), ("parallel_and_map", {}),
         ("child_context", {}), ("wait_for_condition", {}), ("chained", {"n": 5})]


@pytest.mark.parametrize("handler,payload", CASES, ids=[case[0] for case in CASES])
async def test_lambdalet_and_aws_local_runner_agree(tmp_path, handler, payload):
    extra = [function(tmp_path, "plain", "plain", durable=False), function(tmp_path, "steps", "steps_and_wait")]
    answer, ours, events = await run_and_show(tmp_path, handler, payload, *extra)
    status, theirs, error, local_events = await trio.to_thread.run_sync(local_run, tmp_path, handler, payload)
    if status == "SUCCEEDED":
        assert "FunctionError" not in answer and ours == theirs
    else:
        assert answer["FunctionError"] == "Unhandled"
        assert {"ErrorType": ours["errorType"], "ErrorMessage": ours["errorMessage"]} == error
    assert essence(events, handler) == essence(local_events, handler)

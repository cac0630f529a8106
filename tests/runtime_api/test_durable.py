"""Durable functions written with AWS's durable execution SDK (aws-durable-execution-sdk-python),
run by an in-process server and driven with boto3: each execution's result, and its history from
GetDurableExecutionHistory event by event. Waits, retry delays and timeouts run on a time scale
of 0.01 (a minute lasts 0.6 s). The handlers are in durable_handlers/app.py; the runtime is
awslambdaric on this Python, which has the SDK installed (the test extra)."""

from __future__ import annotations

import json

import pytest
import trio

from durable_helpers import (call, client, details, file_appears, function, history, outline, per_operation,
                             run_and_show, serving, until_ended, until_in_history)

pytest.importorskip("aws_durable_execution_sdk_python", reason="the durable execution SDK is in the test extra")


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


async def test_a_step_is_retried_after_its_delay_until_it_succeeds(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "retries", {})
    assert result == 3 and "FunctionError" not in answer
    assert outline(events) == [
        ("ExecutionStarted", None),
        ("StepStarted", "flaky"), ("StepFailed", "flaky"), ("InvocationCompleted", None),
        ("StepStarted", "flaky"), ("StepFailed", "flaky"), ("InvocationCompleted", None),
        ("StepStarted", "flaky"), ("StepSucceeded", "flaky"), ("InvocationCompleted", None),
        ("ExecutionSucceeded", None),
    ]
    failed = [event["StepFailedDetails"] for event in events if event["EventType"] == "StepFailed"]
    assert [f["RetryDetails"] for f in failed] == [{"CurrentAttempt": 1, "NextAttemptDelaySeconds": 10},
                                                  {"CurrentAttempt": 2, "NextAttemptDelaySeconds": 10}]
    assert failed[0]["Error"]["Payload"] == {"ErrorType": "RuntimeError", "ErrorMessage": "attempt 1 fails"}
    assert "RetryDetails" not in details(events, "StepSucceeded", "flaky")


async def test_a_failing_execution_fails_the_invoke_and_says_why(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "failing", {})
    assert answer["FunctionError"] == "Unhandled"
    assert result == {"errorType": "ValueError", "errorMessage": "failing on purpose"}
    assert outline(events) == [("ExecutionStarted", None), ("StepStarted", "before"), ("StepSucceeded", "before"),
                               ("InvocationCompleted", None), ("ExecutionFailed", None)]
    assert details(events, "ExecutionFailed")["Error"]["Payload"] == {"ErrorType": "ValueError",
                                                                      "ErrorMessage": "failing on purpose"}


async def test_parallel_and_map_run_their_branches_in_child_contexts(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "parallel_and_map", {})
    assert result == {"squares": [1, 4, 9], "pair": ["left", "right"]}
    operations = per_operation(events)
    for context in ("squares", "map-item-0", "map-item-1", "map-item-2", "pair", "parallel-branch-0",
                    "parallel-branch-1"):
        assert operations[context] == ["ContextStarted", "ContextSucceeded"], context
    for step in ("square-0", "square-1", "square-2", "left", "right"):
        assert operations[step] == ["StepStarted", "StepSucceeded"], step
    by_name = {event.get("Name"): event for event in events if event["EventType"] == "ContextStarted"}
    assert {by_name[f"map-item-{i}"]["SubType"] for i in range(3)} == {"MapIteration"}
    assert by_name["squares"]["SubType"] == "Map" and by_name["pair"]["SubType"] == "Parallel"
    assert {by_name[f"map-item-{i}"]["ParentId"] for i in range(3)} == {by_name["squares"]["Id"]}
    assert outline(events)[0] == ("ExecutionStarted", None) and outline(events)[-1] == ("ExecutionSucceeded", None)


async def test_a_child_context_suspends_on_its_wait_and_resumes(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "child_context", {})
    assert result == 21
    assert outline(events) == [
        ("ExecutionStarted", None), ("ContextStarted", "child"), ("StepStarted", "inner-step"),
        ("StepSucceeded", "inner-step"), ("WaitStarted", "inner-wait"), ("InvocationCompleted", None),
        ("WaitSucceeded", "inner-wait"), ("ContextSucceeded", "child"), ("InvocationCompleted", None),
        ("ExecutionSucceeded", None)]
    child = next(event for event in events if event["EventType"] == "ContextStarted")
    assert {event["ParentId"] for event in events if event.get("Name", "").startswith("inner")} == {child["Id"]}
    assert details(events, "ContextSucceeded", "child")["Result"]["Payload"] == "21"


async def test_wait_for_condition_polls_until_its_strategy_stops(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "wait_for_condition", {})
    assert result == 3
    assert outline(events) == [
        ("ExecutionStarted", None),
        ("StepStarted", "poll"), ("StepSucceeded", "poll"), ("InvocationCompleted", None),
        ("StepStarted", "poll"), ("StepSucceeded", "poll"), ("InvocationCompleted", None),
        ("StepStarted", "poll"), ("StepSucceeded", "poll"), ("InvocationCompleted", None),
        ("ExecutionSucceeded", None)]
    polls = [event["StepSucceededDetails"] for event in events if event["EventType"] == "StepSucceeded"]
    assert [poll["Result"]["Payload"] for poll in polls] == ["1", "2", "3"]
    assert [poll.get("RetryDetails") for poll in polls] == [{"CurrentAttempt": 1, "NextAttemptDelaySeconds": 5},
                                                       {"CurrentAttempt": 2, "NextAttemptDelaySeconds": 5},
                                                       None]


async def test_a_chained_invoke_of_a_plain_and_of_a_durable_function(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "chained", {"n": 5},
                                                function(tmp_path, "plain", "plain", durable=False),
                                                function(tmp_path, "steps", "steps_and_wait"))
    assert result == {"plain": {"doubled": 10}, "durable": {"result": 12}}
    assert per_operation(events) == {"call-plain": ["ChainedInvokeStarted", "ChainedInvokeSucceeded"],
                                      "call-steps": ["ChainedInvokeStarted", "ChainedInvokeSucceeded"]}
    assert details(events, "ChainedInvokeStarted", "call-plain") == {
        "FunctionName": "plain", "Input": {"Payload": '{"n": 5}', "Truncated": False}}
    assert details(events, "ChainedInvokeSucceeded", "call-steps")["Result"]["Payload"] == '{"result": 12}'
    assert outline(events)[-1] == ("ExecutionSucceeded", None)


async def test_a_callback_completed_by_boto3(tmp_path):
    async with serving(function(tmp_path, "callback", "callback")) as server:
        lam = client(server)
        arn = (await call(lam.invoke, FunctionName="callback", InvocationType="Event",
                          Payload=b'{"timeout": 3600}'))["DurableExecutionArn"]
        await until_in_history(lam, arn, ("InvocationCompleted", None))  # suspended, waiting for it
        callback_id = json.loads(await file_appears(tmp_path / "callback"))
        await call(lam.send_durable_execution_callback_heartbeat, CallbackId=callback_id)
        await call(lam.send_durable_execution_callback_success, CallbackId=callback_id, Result=b"approved by ops")
        with pytest.raises(lam.exceptions.InvalidParameterValueException):  # it has completed
            await call(lam.send_durable_execution_callback_success, CallbackId=callback_id, Result=b"again")
        ended = await until_ended(lam, arn)
        # The SDK hands a callback's result over as sent (its default serdes for callbacks passes it through).
        assert json.loads(ended["Result"]) == {"approved": "approved by ops"}
        events = await history(lam, arn)
    assert outline(events) == [("ExecutionStarted", None), ("CallbackStarted", "approval"),
                               ("InvocationCompleted", None), ("CallbackSucceeded", "approval"),
                               ("InvocationCompleted", None), ("ExecutionSucceeded", None)]
    assert details(events, "CallbackStarted", "approval") == {"CallbackId": callback_id, "Timeout": 3600,
                                                              "HeartbeatTimeout": 0}
    assert details(events, "CallbackSucceeded", "approval")["Result"]["Payload"] == "approved by ops"


async def test_a_callback_that_times_out(tmp_path):
    answer, result, events = await run_and_show(tmp_path, "callback", {"timeout": 30})
    assert result == {"callback": "CallbackTimeoutError"}
    assert outline(events) == [("ExecutionStarted", None), ("CallbackStarted", "approval"),
                               ("InvocationCompleted", None), ("CallbackTimedOut", "approval"),
                               ("InvocationCompleted", None), ("ExecutionSucceeded", None)]
    assert details(events, "CallbackTimedOut", "approval")["Error"]["Payload"]["ErrorType"] == "CallbackTimeout"


async def test_a_stopped_execution(tmp_path):
    async with serving(function(tmp_path, "long", "long_wait")) as server:
        lam = client(server)
        started = await call(lam.invoke, FunctionName="long", InvocationType="Event", Payload=b"{}")
        assert started["StatusCode"] == 202
        arn = started["DurableExecutionArn"]
        await until_in_history(lam, arn, ("InvocationCompleted", None))  # suspended in its wait
        running = await call(lam.get_durable_execution, DurableExecutionArn=arn)
        assert running["Status"] == "RUNNING" and "EndTimestamp" not in running
        await call(lam.stop_durable_execution, DurableExecutionArn=arn,
                   Error={"ErrorType": "Operator", "ErrorMessage": "no longer needed"})
        stopped = await call(lam.get_durable_execution, DurableExecutionArn=arn)
        assert stopped["Status"] == "STOPPED"
        assert stopped["Error"] == {"ErrorType": "Operator", "ErrorMessage": "no longer needed"}
        listed = await call(lam.list_durable_executions_by_function, FunctionName="long")
        assert [(e["DurableExecutionArn"], e["Status"]) for e in listed["DurableExecutions"]] == [(arn, "STOPPED")]
        events = await history(lam, arn)
        with pytest.raises(lam.exceptions.InvalidParameterValueException):
            await call(lam.stop_durable_execution, DurableExecutionArn=arn)
    assert outline(events) == [("ExecutionStarted", None), ("WaitStarted", "long"), ("InvocationCompleted", None),
                               ("ExecutionStopped", None)]
    assert details(events, "ExecutionStopped")["Error"]["Payload"]["ErrorMessage"] == "no longer needed"


async def test_lambdas_errors_for_bad_tokens_unknown_executions_and_callbacks_and_bad_input(tmp_path):
    async with serving(function(tmp_path, "callback", "callback"), function(tmp_path, "plain", "plain", durable=False)
                       ) as server:
        lam = client(server)
        arn = (await call(lam.invoke, FunctionName="callback", InvocationType="Event",
                          Payload=b'{"timeout": 3600}'))["DurableExecutionArn"]
        await until_in_history(lam, arn, ("InvocationCompleted", None))
        errors = lam.exceptions
        # A checkpoint token of no running invocation (this one is suspended), or not a token at all.
        for token in ("not-a-token", "YXJu\nMQ=="):
            with pytest.raises(errors.InvalidParameterValueException, match="Invalid checkpoint token"):
                await call(lam.checkpoint_durable_execution, DurableExecutionArn=arn, CheckpointToken=token, Updates=[])
            with pytest.raises(errors.InvalidParameterValueException, match="Invalid checkpoint token"):
                await call(lam.get_durable_execution_state, DurableExecutionArn=arn, CheckpointToken=token)
        unknown = arn.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
        for operation in (lam.get_durable_execution, lam.get_durable_execution_history, lam.stop_durable_execution):
            with pytest.raises(errors.ResourceNotFoundException):
                await call(operation, DurableExecutionArn=unknown)
        with pytest.raises(errors.ResourceNotFoundException):
            await call(lam.send_durable_execution_callback_success, CallbackId="bm90LWEtY2FsbGJhY2s", Result=b"x")
        with pytest.raises(errors.ResourceNotFoundException):
            await call(lam.list_durable_executions_by_function, FunctionName="nowhere")
        with pytest.raises(errors.InvalidParameterValueException):
            await call(lam.list_durable_executions_by_function, FunctionName="callback", Statuses=["SLEEPING"])
        # The execution went on serving through all of that.
        callback_id = json.loads(await file_appears(tmp_path / "callback"))
        await call(lam.send_durable_execution_callback_failure, CallbackId=callback_id,
                   Error={"ErrorType": "Rejected", "ErrorMessage": "no"})
        ended = await until_ended(lam, arn)
        assert json.loads(ended["Result"]) == {"callback": "CallbackExternalError"}
        with pytest.raises(errors.InvalidParameterValueException):
            await call(lam.send_durable_execution_callback_heartbeat, CallbackId=callback_id)
        events = await history(lam, arn)
        assert details(events, "CallbackFailed", "approval")["Error"]["Payload"] == {"ErrorType": "Rejected",
                                                                                    "ErrorMessage": "no"}


async def test_malformed_requests_get_clear_errors_and_the_server_keeps_serving(tmp_path):
    import requests

    async with serving(function(tmp_path, "steps", "steps_and_wait")) as server:
        base = f"{server.endpoint}/2025-12-01/durable-executions/x"
        for method, url, body in [("POST", f"{base}/checkpoint", b"{not json"),
                                  ("POST", f"{base}/checkpoint", b'{"Updates": []}'),
                                  ("POST", f"{base}/checkpoint", b'{"CheckpointToken": "t", "Updates": [{"Id": 1}]}'),
                                  ("GET", f"{base}/state", b""),
                                  ("GET", f"{base}/history?MaxItems=zero", b""),
                                  ("DELETE", f"{base}/history", b"")]:
            answer = await call(requests.request, method, url, data=body)
            assert answer.status_code in (400, 404, 405), (method, url, answer.text)
            assert answer.headers["x-amzn-ErrorType"] in ("InvalidParameterValueException", "ResourceNotFoundException",
                                                          "UnknownOperationException")
        too_large = await call(requests.post, f"{base}/checkpoint", data=b" " * (6 * 1024 * 1024 + 1))
        assert too_large.status_code == 413
        lam = client(server)
        answer = await call(lam.invoke, FunctionName="steps", Payload=b'{"x": 2}')
        assert json.loads(answer["Payload"].read()) == {"result": 6}


def test_the_config_file_s_durable_settings_and_their_bounds(tmp_path):
    from runtime_api.config import ConfigError, load_config

    path = tmp_path / "lambdalet.toml"
    path.write_text('durable_time_scale = 0.5\n[[function]]\nname = "flow"\n'
                    'durable = { execution_timeout = 600, retention_days = 3 }\n')
    config = load_config(path)
    assert config.durable_time_scale == 0.5
    assert (config.function[0].durable.execution_timeout, config.function[0].durable.retention_days) == (600, 3)
    for settings, problem in [("execution_timeout = 0", "execution_timeout 0 s is outside Lambda's 1-31622400 s"),
                              ("retention_days = 91", "retention_days 91 is outside Lambda's 1-90 days"),
                              ("timeout = 5", "unknown field")]:
        path.write_text(f'[[function]]\nname = "flow"\ndurable = {{ {settings} }}\n')
        with pytest.raises(ConfigError, match=problem):
            load_config(path)
    path.write_text('durable_time_scale = 0\n[[function]]\nname = "flow"\n')
    with pytest.raises(ConfigError, match="durable_time_scale 0.0: it must be more than 0"):
        load_config(path)


async def test_a_failed_invocation_is_tried_again_and_five_in_a_row_fail_the_execution(tmp_path):
    async with serving(function(tmp_path, "crash_once", "crash_once"),
                       function(tmp_path, "always_crash", "always_crash")) as server:
        lam = client(server)
        answer = await call(lam.invoke, FunctionName="crash_once", Payload=b"{}")
        assert json.loads(answer["Payload"].read()) == "survived"
        events = await history(lam, answer["DurableExecutionArn"])
        assert outline(events) == [("ExecutionStarted", None), ("InvocationCompleted", None),
                                   ("StepStarted", "after-crash"), ("StepSucceeded", "after-crash"),
                                   ("InvocationCompleted", None), ("ExecutionSucceeded", None)]
        assert details(events, "InvocationCompleted")["Error"]["Payload"]["ErrorType"] == "Runtime.ExitError"
        failed = await call(lam.invoke, FunctionName="always_crash", Payload=b"{}")
        assert failed["FunctionError"] == "Unhandled"
        assert json.loads(failed["Payload"].read())["errorType"] == "Runtime.ExitError"
        events = await history(lam, failed["DurableExecutionArn"])
        assert outline(events) == [("ExecutionStarted", None), *[("InvocationCompleted", None)] * 5,
                                   ("ExecutionFailed", None)]


async def test_a_durable_execution_name_makes_the_invoke_idempotent(tmp_path):
    async with serving(function(tmp_path, "long", "long_wait")) as server:
        lam = client(server)
        first = await call(lam.invoke, FunctionName="long", InvocationType="Event", Payload=b'{"n": 1}',
                           DurableExecutionName="order-42")
        again = await call(lam.invoke, FunctionName="long", InvocationType="Event", Payload=b'{"n": 1}',
                           DurableExecutionName="order-42")
        assert first["DurableExecutionArn"] == again["DurableExecutionArn"]
        assert "/durable-execution/order-42/" in first["DurableExecutionArn"]
        with pytest.raises(lam.exceptions.DurableExecutionAlreadyStartedException):
            await call(lam.invoke, FunctionName="long", InvocationType="Event", Payload=b'{"n": 2}',
                       DurableExecutionName="order-42")
        with pytest.raises(lam.exceptions.InvalidParameterValueException):
            await call(lam.invoke, FunctionName="long", InvocationType="Event", Payload=b"{}",
                       DurableExecutionName="no spaces")
        listed = await call(lam.list_durable_executions_by_function, FunctionName="long",
                            DurableExecutionName="order-42")
        assert [e["DurableExecutionName"] for e in listed["DurableExecutions"]] == ["order-42"]


async def test_the_execution_timeout_ends_a_waiting_execution(tmp_path):
    # 300 s on the time scale: 3 s, room for the first invocation to start its wait on a busy machine.
    async with serving(function(tmp_path, "long", "long_wait", execution_timeout=300)) as server:
        lam = client(server)
        answer = await call(lam.invoke, FunctionName="long", Payload=b"{}")
        assert answer["FunctionError"] == "Unhandled"
        assert json.loads(answer["Payload"].read())["errorType"] == "ExecutionTimedOut"
        arn = answer["DurableExecutionArn"]
        got = await call(lam.get_durable_execution, DurableExecutionArn=arn)
        assert got["Status"] == "TIMED_OUT" and got["DurableConfig"]["ExecutionTimeout"] == 300
        events = await history(lam, arn)
    assert outline(events) == [("ExecutionStarted", None), ("WaitStarted", "long"), ("InvocationCompleted", None),
                               ("ExecutionTimedOut", None)]


async def test_a_server_without_a_port_refuses_a_durable_function_rather_than_let_its_sdk_reach_aws(tmp_path):
    from runtime_api import ServerConfig
    from runtime_api.invoke_api import ServiceError
    from runtime_api.server import Server

    config = ServerConfig(port=0, function=[function(tmp_path, "steps", "steps_and_wait")])
    async with Server(config, listen=False) as server:
        with pytest.raises(ServiceError, match="durable function: its SDK needs lambdalet's Lambda API"):
            await server.invoke("steps", b'{"x": 1}')


async def test_history_and_listing_page_and_reverse_and_leave_data_out_when_asked(tmp_path):
    async with serving(function(tmp_path, "steps", "steps_and_wait")) as server:
        lam = client(server)
        arns = [(await call(lam.invoke, FunctionName="steps", Payload=json.dumps({"x": n}).encode()))
                ["DurableExecutionArn"] for n in range(3)]
        whole = await history(lam, arns[0])
        pages, marker = [], None
        while True:
            page = await call(lam.get_durable_execution_history, DurableExecutionArn=arns[0], MaxItems=4,
                              **({"Marker": marker} if marker else {}))
            pages.append(page["Events"])
            marker = page.get("NextMarker")
            if not marker:
                break
        assert [len(page) for page in pages] == [4, 4, 2]
        assert [event["EventId"] for page in pages for event in page] == [event["EventId"] for event in whole]
        backwards = await call(lam.get_durable_execution_history, DurableExecutionArn=arns[0], ReverseOrder=True)
        assert [event["EventId"] for event in backwards["Events"]] == list(range(10, 0, -1))
        bare = await call(lam.get_durable_execution_history, DurableExecutionArn=arns[0], IncludeExecutionData=False)
        assert "Result" not in bare["Events"][2]["StepSucceededDetails"]
        assert "Input" not in bare["Events"][0]["ExecutionStartedDetails"]
        got = await call(lam.get_durable_execution, DurableExecutionArn=arns[0], IncludeExecutionData=False)
        assert "InputPayload" not in got and "Result" not in got and got["Status"] == "SUCCEEDED"
        listed, marker = [], None
        while True:
            page = await call(lam.list_durable_executions_by_function, FunctionName="steps", MaxItems=2,
                              **({"Marker": marker} if marker else {}))
            listed += [e["DurableExecutionArn"] for e in page["DurableExecutions"]]
            marker = page.get("NextMarker")
            if not marker:
                break
        assert listed == arns

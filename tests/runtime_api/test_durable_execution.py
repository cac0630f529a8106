"""The durable execution core (runtime_api/durable/execution.py) with no server: checkpoint
tokens consumed in order, ClientToken replays, a bad batch changing nothing, timers, paging, and the
history each transition writes."""

from __future__ import annotations

import pytest

from runtime_api.durable.execution import Execution, parse_callback_id
from runtime_api.durable.wire import (ErrorObject, OperationUpdate, StepOptions, WaitOptions, CallbackOptions,
                                      ChainedInvokeOptions)
from runtime_api.invoke_api import ServiceError

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST/durable-execution/n/id-1"


def begin(**settings) -> tuple[Execution, str]:
    execution = Execution.begin(arn=ARN, name="n", function="f", function_arn="arn:f", version="$LATEST",
                                payload='{"a": 1}', now=100.0, execution_timeout=settings.pop("timeout", 3600),
                                retention_days=14, **settings)
    first = execution.begin_invocation("invocation-1", 100.0)
    return execution, first["CheckpointToken"]


def step(id: str, action: str, **fields) -> OperationUpdate:
    return OperationUpdate(id=id, type="STEP", action=action, **fields)


def test_the_invocation_input_carries_the_execution_operation_in_milliseconds():
    execution, token = begin()
    first = execution.begin_invocation("invocation-2", 101.0)
    [operation] = first["InitialExecutionState"]["Operations"]
    assert operation["Type"] == "EXECUTION" and operation["Status"] == "STARTED"
    assert operation["StartTimestamp"] == 100_000
    assert operation["ExecutionDetails"] == {"InputPayload": '{"a": 1}'}
    assert first["DurableExecutionArn"] == ARN and first["UpdatedOperationIds"] == []


def test_tokens_are_consumed_in_order_and_a_used_one_is_refused():
    execution, token = begin()
    second = execution.checkpoint(token, [step("s1", "START")], None, 101.0)["CheckpointToken"]
    with pytest.raises(ServiceError, match="Invalid checkpoint token") as refused:
        execution.checkpoint(token, [step("s1", "SUCCEED", payload="1")], None, 102.0)
    assert refused.value.error_type == "InvalidParameterValueException"
    assert execution.operations["s1"].status == "STARTED"
    execution.checkpoint(second, [step("s1", "SUCCEED", payload="1")], None, 102.0)
    assert execution.operations["s1"].status == "SUCCEEDED"


def test_a_retried_checkpoint_with_its_client_token_gets_the_same_answer_and_changes_nothing():
    execution, token = begin()
    first = execution.checkpoint(token, [step("s1", "START")], "client-1", 101.0)
    again = execution.checkpoint(token, [step("s1", "START")], "client-1", 101.5)
    assert again == first
    assert [event.event_type for event in execution.history] == ["ExecutionStarted", "StepStarted"]
    with pytest.raises(ServiceError, match="Invalid checkpoint token"):  # another client token: a new call
        execution.checkpoint(token, [], "client-2", 102.0)


def test_a_batch_with_one_bad_update_changes_nothing():
    execution, token = begin()
    with pytest.raises(ServiceError, match="Invalid action RETRY for WAIT"):
        execution.checkpoint(token, [step("s1", "START"), OperationUpdate(id="w", type="WAIT", action="RETRY")],
                             None, 101.0)
    assert "s1" not in execution.operations
    with pytest.raises(ServiceError, match="Parent operation nowhere does not exist"):
        execution.checkpoint(token, [step("s1", "START", parent_id="nowhere")], None, 101.0)
    with pytest.raises(ServiceError, match="never started"):
        execution.checkpoint(token, [OperationUpdate(id="w", type="WAIT", action="CANCEL")], None, 101.0)
    execution.checkpoint(token, [OperationUpdate(id="c", type="CONTEXT", action="START"),
                                 step("s1", "START", parent_id="c")], None, 101.0)  # a parent of the same batch


def test_a_step_retry_becomes_ready_when_its_delay_passes_on_the_time_scale():
    execution, token = begin(scale=0.01)
    token = execution.checkpoint(token, [step("s1", "START")], None, 100.0)["CheckpointToken"]
    execution.checkpoint(token, [step("s1", "RETRY", error=ErrorObject(error_type="E"),
                                      step_options=StepOptions(next_attempt_delay_seconds=100))], None, 100.0)
    execution.end_invocation("r1", 100.0, 100.1, b'{"Status": "PENDING"}', None)
    assert execution.operations["s1"].status == "PENDING" and not execution.runnable
    assert execution.next_due() == pytest.approx(101.0)
    assert not execution.fire(100.9)
    assert execution.fire(101.0) and execution.operations["s1"].status == "READY" and execution.runnable
    again = execution.begin_invocation("invocation-2", 101.0)
    assert again["UpdatedOperationIds"] == ["s1"]


def test_waits_callbacks_and_the_execution_time_out_on_their_timers():
    execution, token = begin(timeout=60)
    execution.checkpoint(token, [OperationUpdate(id="w", type="WAIT", action="START",
                                                 wait_options=WaitOptions(wait_seconds=5)),
                                 OperationUpdate(id="cb", type="CALLBACK", action="START",
                                                 callback_options=CallbackOptions(timeout_seconds=10,
                                                                                  heartbeat_timeout_seconds=3))],
                         None, 100.0)
    assert execution.next_due() == 103.0  # the heartbeat timeout
    execution.callback("cb", 102.0, heartbeat=True)
    assert execution.next_due() == 105.0  # the wait; the heartbeat moved to 105 too
    execution.fire(105.0)
    assert execution.operations["w"].status == "SUCCEEDED" and execution.operations["cb"].status == "TIMED_OUT"
    with pytest.raises(ServiceError) as late:
        execution.callback("cb", 106.0, result="late")
    assert late.value.error_type == "CallbackTimeoutException"
    assert execution.next_due() == 160.0
    execution.fire(160.0)
    assert execution.status == "TIMED_OUT"
    assert [event.event_type for event in execution.history][-1] == "ExecutionTimedOut"


def test_a_callback_id_names_its_execution_and_operation():
    execution, token = begin()
    answer = execution.checkpoint(token, [OperationUpdate(id="cb", type="CALLBACK", action="START")], None, 101.0)
    [operation] = answer["NewExecutionState"]["Operations"]
    assert parse_callback_id(operation["CallbackDetails"]["CallbackId"]) == (ARN, "cb")
    with pytest.raises(ServiceError) as unknown:
        parse_callback_id("!!")
    assert unknown.value.error_type == "ResourceNotFoundException"


def test_a_large_result_checkpointed_on_the_execution_is_its_result():
    execution, token = begin()
    answer = execution.checkpoint(token, [OperationUpdate(id="id-1", type="EXECUTION", action="SUCCEED",
                                                          payload='"big"')], None, 101.0)
    assert "CheckpointToken" in answer
    execution.end_invocation("r1", 100.0, 102.0, b'{"Status": "SUCCEEDED", "Result": ""}', None)
    assert execution.status == "SUCCEEDED" and execution.result == '"big"'


def test_state_pages_and_a_handler_answer_that_is_not_durable_output():
    execution, token = begin()
    execution.checkpoint(token, [step(f"s{i}", "START") for i in range(5)], None, 101.0)
    first = execution.state(execution._token(), None, 2)
    assert [op["Id"] for op in first["Operations"]] == ["id-1", "s0"] and first["NextMarker"] == "2"
    last = execution.state(execution._token(), "4", 2)
    assert [op["Id"] for op in last["Operations"]] == ["s3", "s4"] and "NextMarker" not in last
    execution.end_invocation("r1", 100.0, 102.0, b'{"not": "output"}', None)
    assert execution.status == "FAILED" and execution.error.error_type == "InvalidInvocationOutput"


def test_a_chained_invoke_is_left_for_the_shell_to_start():
    execution, token = begin()
    execution.checkpoint(token, [OperationUpdate(id="ci", type="CHAINED_INVOKE", action="START", payload="{}",
                                                 chained_invoke_options=ChainedInvokeOptions(function_name="g"))],
                         None, 101.0)
    assert execution.children["ci"].function == "g" and not execution.children["ci"].started
    execution.chained_invoke_ended("ci", 102.0, "FAILED", error=ErrorObject(error_type="Boom"))
    assert execution.operations["ci"].status == "FAILED" and execution.updated == ["ci"]
    assert execution.history[-1].event_type == "ChainedInvokeFailed"


def test_the_invocation_input_carries_a_first_page_and_names_where_the_rest_begins():
    import msgspec

    execution, token = begin()
    big = "x" * 250_000
    execution.checkpoint(token, [step(f"s{i}", "SUCCEED", payload=f'"{big}"') for i in range(25)], None, 101.0)
    first = execution.begin_invocation("invocation-2", 102.0)
    shown = first["InitialExecutionState"]
    assert 1 < len(shown["Operations"]) < 26 and shown["NextMarker"] == str(len(shown["Operations"]))
    assert len(msgspec.json.encode(shown["Operations"])) <= 5 * 1024 * 1024
    rest = execution.state(first["CheckpointToken"], shown["NextMarker"], None)
    assert [op["Id"] for op in shown["Operations"] + rest["Operations"]] == ["id-1", *[f"s{i}" for i in range(25)]]
    assert "NextMarker" not in rest


def test_an_operation_payload_or_a_callback_result_over_256_kb_is_refused():
    execution, token = begin()
    too_big = "x" * (256 * 1024 + 1)
    with pytest.raises(ServiceError, match="larger than 262144 bytes") as refused:
        execution.checkpoint(token, [step("s1", "SUCCEED", payload=too_big)], None, 101.0)
    assert refused.value.error_type == "InvalidParameterValueException" and "s1" not in execution.operations
    token = execution.checkpoint(token, [OperationUpdate(id="cb", type="CALLBACK", action="START")], None,
                                 101.0)["CheckpointToken"]
    with pytest.raises(ServiceError, match="larger than 262144 bytes"):
        execution.callback("cb", 102.0, result=too_big)
    assert execution.operations["cb"].status == "STARTED"
    execution.checkpoint(token, [OperationUpdate(id="id-1", type="EXECUTION", action="SUCCEED",
                                                 payload=too_big)], None, 103.0)  # a large result goes this way

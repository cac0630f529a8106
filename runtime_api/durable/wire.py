"""The durable execution formats of the Lambda API (2025-12-01), each defined once: what the SDK
sends to CheckpointDurableExecution, the operations GetDurableExecutionState returns, the events of
GetDurableExecutionHistory, and the invocation input and output a durable handler exchanges with
Lambda (botocore's service model for lambda names every field; the SDK's own models read them).

Times are epoch seconds (floats) in the API's JSON, which botocore reads as timestamps; in the
invocation input the SDK reads them as epoch milliseconds (`invocation_input`)."""

from __future__ import annotations

import msgspec

# Operation types, actions and statuses, as the service model spells them.
EXECUTION, CONTEXT, STEP, WAIT, CALLBACK, CHAINED_INVOKE = (
    "EXECUTION", "CONTEXT", "STEP", "WAIT", "CALLBACK", "CHAINED_INVOKE")
OPERATION_TYPES = (EXECUTION, CONTEXT, STEP, WAIT, CALLBACK, CHAINED_INVOKE)
START, SUCCEED, FAIL, RETRY, CANCEL = "START", "SUCCEED", "FAIL", "RETRY", "CANCEL"
ACTIONS = (START, SUCCEED, FAIL, RETRY, CANCEL)
STARTED, PENDING, READY, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED = (
    "STARTED", "PENDING", "READY", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT", "STOPPED")
TERMINAL = frozenset((SUCCEEDED, FAILED, CANCELLED, TIMED_OUT, STOPPED))
RUNNING = "RUNNING"  # an execution's status while it has not ended (the others are shared with operations)
EXECUTION_STATUSES = (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, STOPPED)


class Shape(msgspec.Struct, rename="pascal", omit_defaults=True, forbid_unknown_fields=False):
    """Lambda's JSON: PascalCase names, absent fields left out."""


class ErrorObject(Shape):
    error_message: str | None = None
    error_type: str | None = None
    error_data: str | None = None
    stack_trace: list[str] | None = None


class StepOptions(Shape):
    next_attempt_delay_seconds: int = 0


class WaitOptions(Shape):
    wait_seconds: int = 0


class CallbackOptions(Shape):
    timeout_seconds: int = 0
    heartbeat_timeout_seconds: int = 0


class ChainedInvokeOptions(Shape):
    function_name: str = ""
    tenant_id: str | None = None
    x_amzn_trace_id: str | None = msgspec.field(default=None, name="XAmznTraceId")


class ContextOptions(Shape):
    replay_children: bool = False


class OperationUpdate(Shape, frozen=True):
    id: str
    type: str
    action: str
    parent_id: str | None = None
    name: str | None = None
    sub_type: str | None = None
    payload: str | None = None
    error: ErrorObject | None = None
    context_options: ContextOptions | None = None
    step_options: StepOptions | None = None
    wait_options: WaitOptions | None = None
    callback_options: CallbackOptions | None = None
    chained_invoke_options: ChainedInvokeOptions | None = None


class CheckpointRequest(Shape):
    checkpoint_token: str = ""
    updates: list[OperationUpdate] = []
    client_token: str | None = None


class ExecutionDetails(Shape):
    input_payload: str | None = None


class ContextDetails(Shape):
    replay_children: bool | None = None
    result: str | None = None
    error: ErrorObject | None = None


class StepDetails(Shape):
    attempt: int = 0
    next_attempt_timestamp: float | None = None
    result: str | None = None
    error: ErrorObject | None = None


class WaitDetails(Shape):
    scheduled_end_timestamp: float | None = None


class CallbackDetails(Shape):
    callback_id: str = ""
    result: str | None = None
    error: ErrorObject | None = None


class ChainedInvokeDetails(Shape):
    result: str | None = None
    error: ErrorObject | None = None


class Operation(Shape):
    id: str
    type: str
    status: str
    parent_id: str | None = None
    name: str | None = None
    sub_type: str | None = None
    start_timestamp: float | None = None
    end_timestamp: float | None = None
    execution_details: ExecutionDetails | None = None
    context_details: ContextDetails | None = None
    step_details: StepDetails | None = None
    wait_details: WaitDetails | None = None
    callback_details: CallbackDetails | None = None
    chained_invoke_details: ChainedInvokeDetails | None = None


class InvocationOutput(Shape):
    """What a durable handler returns to Lambda."""

    status: str
    result: str | None = None
    error: ErrorObject | None = None


class DurableConfig(Shape):
    """A function's durable configuration (DurableConfig in templates and the Lambda API)."""

    execution_timeout: int = 86400
    retention_period_in_days: int = 14


# -- history ------------------------------------------------------------------------------------

class Payload(Shape):
    payload: str | None = None
    truncated: bool = False


class EventError(Shape):
    payload: ErrorObject | None = None
    truncated: bool = False


class HistoryEvent(Shape):
    """One event of GetDurableExecutionHistory: its type, the operation it is about, and the
    details Lambda gives that type (kept as a plain object named `<EventType>Details`)."""

    event_type: str
    event_id: int
    event_timestamp: float
    id: str | None = None
    name: str | None = None
    parent_id: str | None = None
    sub_type: str | None = None
    details: dict = {}

    def to_wire(self, include_data: bool = True) -> dict:
        body = {"EventType": self.event_type, "EventId": self.event_id, "EventTimestamp": self.event_timestamp}
        for key, value in (("Id", self.id), ("Name", self.name), ("ParentId", self.parent_id),
                           ("SubType", self.sub_type)):
            if value is not None:
                body[key] = value
        details = self.details if include_data else _without_data(self.details)
        body[f"{self.event_type}Details"] = details
        return body


def _without_data(details: dict) -> dict:
    """History without execution data: payloads (inputs, results, errors) left out."""
    return {key: value for key, value in details.items() if key not in ("Input", "Result", "Error")}


def encode(value) -> bytes:
    return msgspec.json.encode(value)

"""One durable execution as the Lambda service keeps it, with no I/O: its operations, the
checkpoint token of the invocation running it, its history, and its timers. The trio shell
(service.py) gives it the time, persists it after every change and invokes the handler when it
says so (`runnable`); everything that decides what a checkpoint, a timer, a callback or a stop
does is here.

How Lambda's durable functions work (the AWS Lambda Developer Guide, "Lambda durable functions"):
the handler checkpoints each operation it starts and ends; an invocation ends SUCCEEDED, FAILED or
PENDING (suspended); the service re-invokes a suspended execution when something it waits for
happens (a wait's timer, a step's retry delay, a callback, a chained invoke), with the operations
so far, and the handler replays up to where it stopped. Checkpoint tokens are consumed in order:
each checkpoint answers with the next one, and only the newest of the running invocation is good."""

from __future__ import annotations

import base64
import binascii

import msgspec

from ..invoke_api import ServiceError
from .wire import (
    ACTIONS, CALLBACK, CANCEL, CANCELLED, CHAINED_INVOKE, CONTEXT, EXECUTION, FAIL, FAILED, OPERATION_TYPES,
    PENDING, READY, RETRY, RUNNING, START, STARTED, STEP, STOPPED, SUCCEED, SUCCEEDED, TERMINAL, TIMED_OUT, WAIT,
    CallbackDetails, ChainedInvokeDetails, ContextDetails, ErrorObject, ExecutionDetails, HistoryEvent,
    InvocationOutput, Operation, OperationUpdate, StepDetails, WaitDetails,
)

PAGE = 1000  # operations in one page of state, the SDK's own MaxItems
PAYLOAD_LIMIT = 256 * 1024  # an operation's payload at most (the SDK's CHECKPOINT_SIZE_LIMIT_BYTES)
PAGE_BYTES = 5 * 1024 * 1024  # the invocation input's operations at most (Lambda's payload limit is 6 MB)
# An invocation that fails (the handler crashed, timed out or could not start) is tried again, as
# AWS's local runner does: after a backoff, up to this many failures in a row, then the execution fails.
INVOCATION_ATTEMPTS = 5
INVOCATION_BACKOFF = 5.0  # seconds (time-scaled)
# What each operation type may be asked to do (the service model's OperationAction per type, as
# the SDK sends them).
ALLOWED = {
    EXECUTION: (SUCCEED, FAIL),
    CONTEXT: (START, SUCCEED, FAIL),
    STEP: (START, SUCCEED, FAIL, RETRY),
    WAIT: (START, CANCEL),
    CALLBACK: (START,),
    CHAINED_INVOKE: (START,),
}


def invalid(message: str) -> ServiceError:
    return ServiceError(400, "InvalidParameterValueException", message)


def invalid_token() -> ServiceError:
    return invalid("Invalid checkpoint token")


def callback_id(arn: str, operation_id: str) -> str:
    """A callback's id names its execution and operation, so any host sharing the store finds it."""
    return base64.urlsafe_b64encode(f"{arn}\n{operation_id}".encode()).decode().rstrip("=")


def parse_callback_id(value: str) -> tuple[str, str]:
    """(execution ARN, operation id); ResourceNotFoundException for an id lambdalet did not make."""
    try:
        arn, operation_id = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().split("\n")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ServiceError(404, "ResourceNotFoundException", f"Callback {value} not found") from None
    return arn, operation_id


class Cached(msgspec.Struct):
    """The last checkpoint's answer, replayed to a retry with the same ClientToken and token."""

    client_token: str
    token: str
    response: dict


class ChainedInvoke(msgspec.Struct):
    """A chained invoke the shell is to run: the function, its input, and what it started."""

    function: str
    payload: str
    tenant_id: str | None = None
    started: bool = False
    execution: str | None = None  # the durable execution it started, when the function is durable


class Execution(msgspec.Struct, kw_only=True):
    arn: str
    name: str
    function: str  # the name it is served by
    function_arn: str
    version: str
    input_payload: str
    start: float
    timeout: float  # seconds on the server's clock (the execution timeout, time-scaled)
    execution_timeout: int  # as configured (what GetDurableExecution says)
    retention_days: int
    scale: float = 1.0  # every durable delay multiplied by this (--durable-time-scale)
    status: str = RUNNING
    end: float | None = None
    result: str | None = None
    error: ErrorObject | None = None
    operations: dict[str, Operation] = {}
    touched: dict[str, int] = {}  # operation id -> the change number of its last change
    changes: int = 0
    seen: int = 0  # the last change the running invocation was told of
    invocation: str | None = None  # the running invocation's id; None while suspended
    token: int = 0
    updated: list[str] = []  # operations the service changed since the last invocation began
    runnable: bool = True  # the handler is to be invoked (again)
    cached: Cached | None = None
    deadlines: dict[str, list[float]] = {}  # callback operation -> [timeout, heartbeat timeout] (0: none)
    children: dict[str, ChainedInvoke] = {}  # chained invoke operations, by id
    history: list[HistoryEvent] = []
    saved: int = 0  # the last change written to the store (service.py writes only what came after)
    saved_events: int = 0  # history events written
    failed_invocations: int = 0  # in a row
    retry_at: float | None = None  # when a failed invocation is tried again

    # -- starting and invoking ------------------------------------------------------------------

    @classmethod
    def begin(cls, *, arn: str, name: str, function: str, function_arn: str, version: str, payload: str,
              now: float, execution_timeout: int, retention_days: int, scale: float = 1.0) -> Execution:
        execution = cls(arn=arn, name=name, function=function, function_arn=function_arn, version=version,
                        input_payload=payload, start=now, timeout=execution_timeout * scale,
                        execution_timeout=execution_timeout, retention_days=retention_days, scale=scale)
        execution._put(Operation(id=execution.execution_id, type=EXECUTION, status=STARTED, name=name,
                                 start_timestamp=now, execution_details=ExecutionDetails(input_payload=payload)))
        execution._record("ExecutionStarted", now, execution.operations[execution.execution_id], {
            "Input": {"Payload": payload, "Truncated": False}, "ExecutionTimeout": execution_timeout})
        return execution

    @property
    def execution_id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def done(self) -> bool:
        return self.status != RUNNING

    def begin_invocation(self, invocation_id: str, now: float) -> dict:
        """The durable invocation input of a new invocation (its first page of operations; the SDK
        asks GetDurableExecutionState for the rest)."""
        self.invocation = invocation_id
        self.token += 1
        self.seen = self.changes
        self.runnable = False
        self.cached = None
        updated, self.updated = self.updated, []
        page, size = [], 0
        for op in self.operations.values():  # a first page, the rest through GetDurableExecutionState
            body = _millis(op)
            size += len(msgspec.json.encode(body))
            if len(page) == PAGE or (page and size > PAGE_BYTES):
                break
            page.append(body)
        state: dict = {"Operations": page}
        if len(page) < len(self.operations):
            state["NextMarker"] = str(len(page))
        return {"DurableExecutionArn": self.arn, "CheckpointToken": self._token(), "InitialExecutionState": state,
                "UpdatedOperationIds": updated}

    def end_invocation(self, request_id: str, started: float, now: float, output: bytes | None,
                       function_error: ErrorObject | None) -> None:
        """The invocation ended: with the handler's output (SUCCEEDED, FAILED or PENDING), or a
        function error (the handler crashed or timed out before answering)."""
        self.invocation = None
        error = function_error
        answer: InvocationOutput | None = None
        if error is None:
            try:
                answer = msgspec.json.decode(output or b"", type=InvocationOutput)
            except (msgspec.DecodeError, msgspec.ValidationError):
                error = ErrorObject(error_type="InvalidInvocationOutput",
                                    error_message="The durable function's response is not a durable invocation "
                                                  "output (Status SUCCEEDED, FAILED or PENDING)")
        details: dict = {"StartTimestamp": started, "EndTimestamp": now, "RequestId": request_id}
        if error is not None:
            details["Error"] = {"Payload": _error(error), "Truncated": False}
        if not self.done:
            self._record("InvocationCompleted", now, None, details)
        if self.done:
            return
        if function_error is not None:
            self.failed_invocations += 1
            if self.failed_invocations >= INVOCATION_ATTEMPTS:
                self.finish(FAILED, now, error=error)
            else:
                self.retry_at = now + INVOCATION_BACKOFF * self.scale
            return
        self.failed_invocations = 0
        if error is not None:
            self.finish(FAILED, now, error=error)
        elif answer.status == SUCCEEDED:
            self.finish(SUCCEEDED, now, result=answer.result if answer.result else self.result)
        elif answer.status == FAILED:
            self.finish(FAILED, now, error=answer.error or self.error or ErrorObject(error_type="Unknown"))
        elif answer.status != PENDING:
            self.finish(FAILED, now, error=ErrorObject(error_type="InvalidInvocationOutput",
                                                       error_message=f"Unknown status {answer.status!r}"))
        elif self.updated:
            self.runnable = True  # something it waits for happened while it ran

    def finish(self, status: str, now: float, *, result: str | None = None, error: ErrorObject | None = None) -> None:
        if self.done:
            return
        self.status, self.end, self.invocation = status, now, None
        self.result = result if status == SUCCEEDED else None
        self.error = error if status != SUCCEEDED else None
        op = self.operations[self.execution_id]
        op.status, op.end_timestamp = status, now
        event = {SUCCEEDED: "ExecutionSucceeded", FAILED: "ExecutionFailed", TIMED_OUT: "ExecutionTimedOut",
                 STOPPED: "ExecutionStopped"}[status]
        self._record(event, now, op, {"Result": {"Payload": result or "", "Truncated": False}}
                     if status == SUCCEEDED else {"Error": {"Payload": _error(error), "Truncated": False}})
        self._touch(op)

    # -- the data plane: checkpoints and state --------------------------------------------------

    def checkpoint(self, token: str, updates: list[OperationUpdate], client_token: str | None, now: float) -> dict:
        """CheckpointDurableExecution: apply `updates` in order and answer the next token with the
        operations the invocation has not been told of (its own updates included: a callback's id
        comes back this way)."""
        if client_token and self.cached is not None and (self.cached.client_token, self.cached.token) == (
                client_token, token):
            return self.cached.response
        self._check_token(token, exact=True)
        batch: set[str] = set()
        for update in updates:  # all checked before any is applied: a bad batch changes nothing
            self._check(update, batch)
            batch.add(update.id)
        for update in updates:
            self._apply(update, now)
        self.fire(now)
        self.token += 1
        fresh = [op for op in self.operations.values() if self.touched.get(op.id, 0) > self.seen]
        self.seen = self.changes
        response: dict = {"NewExecutionState": {"Operations": [msgspec.to_builtins(op) for op in fresh]}}
        if not self.done:
            response["CheckpointToken"] = self._token()
        if client_token:
            self.cached = Cached(client_token, token, response)
        return response

    def state(self, token: str, marker: str | None, max_items: int | None) -> dict:
        """GetDurableExecutionState: a page of the operations, for the running invocation."""
        self._check_token(token, exact=False)
        try:
            first = int(marker) if marker else 0
        except ValueError:
            raise invalid(f"Invalid marker {marker!r}") from None
        size = max_items if max_items and 0 < max_items <= PAGE else PAGE
        operations = list(self.operations.values())
        answer: dict = {"Operations": [msgspec.to_builtins(op) for op in operations[first:first + size]]}
        if first + size < len(operations):
            answer["NextMarker"] = str(first + size)
        return answer

    def _token(self) -> str:
        return base64.urlsafe_b64encode(f"{self.arn}\n{self.invocation}\n{self.token}".encode()).decode()

    def _check_token(self, token: str, *, exact: bool) -> None:
        try:
            arn, invocation, number = base64.urlsafe_b64decode(token).decode().split("\n")
            number = int(number)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise invalid_token() from None
        if (self.done or arn != self.arn or invocation != self.invocation
                or (number != self.token if exact else number > self.token)):
            raise invalid_token()

    def _check(self, update: OperationUpdate, batch: set[str]) -> None:
        """An update Lambda would refuse: InvalidParameterValueException. `batch`: the operations
        the same checkpoint's earlier updates name (a context and its first child come together)."""
        if update.type not in OPERATION_TYPES:
            raise invalid(f"Invalid operation type {update.type!r}")
        if update.type != EXECUTION and update.payload is not None and len(update.payload.encode()) > PAYLOAD_LIMIT:
            raise invalid(f"The payload of operation {update.id} is larger than {PAYLOAD_LIMIT} bytes")
        if update.action not in ACTIONS or update.action not in ALLOWED[update.type]:
            raise invalid(f"Invalid action {update.action} for {update.type} operation.")
        current = self.operations.get(update.id)
        if update.type == EXECUTION:
            if update.id != self.execution_id:
                raise invalid(f"Invalid EXECUTION operation id {update.id}")
            return
        if current is not None and current.type != update.type:
            raise invalid(f"Operation {update.id} is a {current.type} operation, not {update.type}")
        if update.action in (CANCEL,) and current is None:
            raise invalid(f"Cannot {update.action} operation {update.id}: it was never started")
        if current is not None and current.status in TERMINAL:
            raise invalid(f"Operation {update.id} has already ended ({current.status})")
        if update.action == START and current is not None and not (
                current.type == STEP and current.status == READY):
            raise invalid(f"Operation {update.id} has already started")
        if update.parent_id is not None and update.parent_id not in self.operations and update.parent_id not in batch:
            raise invalid(f"Parent operation {update.parent_id} does not exist")
        if update.type == CHAINED_INVOKE and not (update.chained_invoke_options
                                                  and update.chained_invoke_options.function_name):
            raise invalid("A CHAINED_INVOKE operation needs ChainedInvokeOptions.FunctionName")

    def _apply(self, update: OperationUpdate, now: float) -> None:
        kind, action = update.type, update.action
        if kind == EXECUTION:  # a result too large for the invocation's response comes this way
            if action == SUCCEED:
                self.result = update.payload
            else:
                self.error = update.error
            return
        op = self.operations.get(update.id)
        if op is None:
            op = Operation(id=update.id, type=kind, status=STARTED, parent_id=update.parent_id, name=update.name,
                           sub_type=update.sub_type, start_timestamp=now)
            self._put(op)
        if kind == STEP:
            details = op.step_details or StepDetails()
            attempt = details.attempt + 1
            if action == START:
                op.status, details.next_attempt_timestamp = STARTED, None
                self._event("StepStarted", op, now, {})
            elif action == RETRY:
                delay = update.step_options.next_attempt_delay_seconds if update.step_options else 0
                op.status = PENDING
                details.attempt, details.next_attempt_timestamp = attempt, now + delay * self.scale
                details.result, details.error = update.payload, update.error
                retry = {"RetryDetails": {"CurrentAttempt": attempt, "NextAttemptDelaySeconds": delay}}
                if update.error is not None:
                    self._event("StepFailed", op, now, {"Error": _event_error(update.error), **retry})
                else:
                    self._event("StepSucceeded", op, now, {"Result": _payload(update.payload), **retry})
            else:
                op.status, op.end_timestamp = (SUCCEEDED if action == SUCCEED else FAILED), now
                details.result, details.error = update.payload, update.error
                if action == SUCCEED:  # RetryDetails only where an attempt failed (as AWS's local runner writes them)
                    self._event("StepSucceeded", op, now, {"Result": _payload(update.payload)})
                else:
                    self._event("StepFailed", op, now, {"Error": _event_error(update.error),
                                                        "RetryDetails": {"CurrentAttempt": attempt}})
            op.step_details = details
        elif kind == WAIT:
            if action == START:
                seconds = update.wait_options.wait_seconds if update.wait_options else 0
                end = now + seconds * self.scale
                op.wait_details = WaitDetails(scheduled_end_timestamp=end)
                self._event("WaitStarted", op, now, {"Duration": seconds, "ScheduledEndTimestamp": end})
            else:
                op.status, op.end_timestamp = CANCELLED, now
                self._event("WaitCancelled", op, now, {"Error": _event_error(update.error)} if update.error else {})
        elif kind == CONTEXT:
            if action == START:
                self._event("ContextStarted", op, now, {})
            else:
                op.status, op.end_timestamp = (SUCCEEDED if action == SUCCEED else FAILED), now
                replay = update.context_options.replay_children if update.context_options else None
                op.context_details = ContextDetails(replay_children=replay or None, result=update.payload,
                                                    error=update.error)
                if action == SUCCEED:
                    self._event("ContextSucceeded", op, now, {"Result": _payload(update.payload)})
                else:
                    self._event("ContextFailed", op, now, {"Error": _event_error(update.error)})
        elif kind == CALLBACK:
            options = update.callback_options
            op.callback_details = CallbackDetails(callback_id=callback_id(self.arn, op.id))
            timeout = options.timeout_seconds if options else 0
            heartbeat = options.heartbeat_timeout_seconds if options else 0
            self.deadlines[op.id] = [now + timeout * self.scale if timeout else 0.0,
                                     now + heartbeat * self.scale if heartbeat else 0.0, heartbeat * self.scale]
            self._event("CallbackStarted", op, now, {"CallbackId": op.callback_details.callback_id,
                                                     "Timeout": timeout, "HeartbeatTimeout": heartbeat})
        elif kind == CHAINED_INVOKE:
            options = update.chained_invoke_options
            op.chained_invoke_details = ChainedInvokeDetails()
            started = {"FunctionName": options.function_name, "Input": _payload(update.payload)}
            if options.tenant_id:
                started["TenantId"] = options.tenant_id
            self._event("ChainedInvokeStarted", op, now, started)
            # The shell starts it (service.py); until it says so, `started` is False, and a server
            # that stops before then starts it again when the execution is loaded.
            self.children[op.id] = ChainedInvoke(function=options.function_name, payload=update.payload or "",
                                                 tenant_id=options.tenant_id)
        self._touch(op)

    # -- what the service does on its own -------------------------------------------------------

    def next_due(self) -> float | None:
        """When a timer of this execution next fires (None: none is set)."""
        if self.done:
            return None
        times = [self.start + self.timeout, self.retry_at]
        for op in self.operations.values():
            if op.type == WAIT and op.status == STARTED and op.wait_details:
                times.append(op.wait_details.scheduled_end_timestamp)
            elif op.type == STEP and op.status == PENDING and op.step_details:
                times.append(op.step_details.next_attempt_timestamp)
            elif op.type == CALLBACK and op.status == STARTED and op.id in self.deadlines:
                times.extend(t for t in self.deadlines[op.id][:2] if t)
        return min(t for t in times if t is not None)

    def fire(self, now: float) -> bool:
        """Every timer due by `now`: waits succeed, steps become READY for their next attempt,
        callbacks time out, the execution times out. True when the handler has something new."""
        if self.done:
            return False
        if now >= self.start + self.timeout:
            self.finish(TIMED_OUT, now, error=ErrorObject(error_type="ExecutionTimedOut",
                                                          error_message="The execution timed out"))
            return True
        fired = False
        if self.retry_at is not None and self.retry_at <= now:
            self.retry_at, self.runnable, fired = None, True, True
        for op in list(self.operations.values()):
            if op.type == WAIT and op.status == STARTED and op.wait_details and \
                    op.wait_details.scheduled_end_timestamp <= now:
                op.status, op.end_timestamp = SUCCEEDED, now
                seconds = round((op.wait_details.scheduled_end_timestamp - op.start_timestamp) / self.scale)
                self._event("WaitSucceeded", op, now, {"Duration": seconds})
                self._service_touch(op)
                fired = True
            elif op.type == STEP and op.status == PENDING and op.step_details and \
                    op.step_details.next_attempt_timestamp <= now:
                op.status = READY
                self._service_touch(op)
                fired = True
            elif op.type == CALLBACK and op.status == STARTED and op.id in self.deadlines:
                timeout, heartbeat = self.deadlines[op.id][:2]
                if (timeout and timeout <= now) or (heartbeat and heartbeat <= now):
                    kind = "Callback timed out" if timeout and timeout <= now else "Callback heartbeat timed out"
                    error = ErrorObject(error_type="CallbackTimeout", error_message=kind)
                    op.status, op.end_timestamp = TIMED_OUT, now
                    op.callback_details.error = error
                    self._event("CallbackTimedOut", op, now, {"Error": _event_error(error)})
                    self._service_touch(op)
                    fired = True
        return fired

    def callback(self, operation_id: str, now: float, *, result: str | None = None,
                 error: ErrorObject | None = None, heartbeat: bool = False) -> None:
        """SendDurableExecutionCallbackSuccess, Failure or Heartbeat."""
        op = self.operations.get(operation_id)
        if op is None or op.type != CALLBACK:
            raise ServiceError(404, "ResourceNotFoundException", "Callback not found")
        if op.status == TIMED_OUT:
            raise ServiceError(400, "CallbackTimeoutException", "The callback has timed out")
        if op.status != STARTED or self.done:
            raise invalid("The callback has already completed")
        if heartbeat:
            deadlines = self.deadlines.get(op.id)
            if deadlines and deadlines[2]:
                deadlines[1] = now + deadlines[2]
            return
        if result is not None and len(result.encode()) > PAYLOAD_LIMIT:
            raise invalid(f"The callback's result is larger than {PAYLOAD_LIMIT} bytes")
        if error is None:
            op.status, op.end_timestamp = SUCCEEDED, now
            op.callback_details.result = result
            self._event("CallbackSucceeded", op, now, {"Result": _payload(result)})
        else:
            op.status, op.end_timestamp = FAILED, now
            op.callback_details.error = error
            self._event("CallbackFailed", op, now, {"Error": _event_error(error)})
        self._service_touch(op)

    def chained_invoke_ended(self, operation_id: str, now: float, status: str, *, result: str | None = None,
                             error: ErrorObject | None = None) -> None:
        op = self.operations.get(operation_id)
        if op is None or op.status in TERMINAL or self.done:
            return
        op.status, op.end_timestamp = status, now
        op.chained_invoke_details = ChainedInvokeDetails(result=result if status == SUCCEEDED else None,
                                                         error=error if status != SUCCEEDED else None)
        event = {SUCCEEDED: "ChainedInvokeSucceeded", FAILED: "ChainedInvokeFailed",
                 TIMED_OUT: "ChainedInvokeTimedOut", STOPPED: "ChainedInvokeStopped"}[status]
        self._event(event, op, now, {"Result": _payload(result)} if status == SUCCEEDED
                    else {"Error": _event_error(error)})
        self._service_touch(op)

    def stop(self, now: float, error: ErrorObject | None) -> None:
        """StopDurableExecution."""
        if self.done:
            raise invalid(f"Execution {self.arn} has already ended ({self.status})")
        self.finish(STOPPED, now, error=error or ErrorObject(error_type="ExecutionStopped",
                                                             error_message="The execution was stopped"))

    # -- the record -----------------------------------------------------------------------------

    def _put(self, op: Operation) -> None:
        self.operations[op.id] = op
        self._touch(op)

    def _touch(self, op: Operation) -> None:
        self.changes += 1
        self.touched[op.id] = self.changes

    def _service_touch(self, op: Operation) -> None:
        """A change the handler did not make: a running invocation hears of it in its next
        checkpoint's answer; a suspended one is invoked again with its id in UpdatedOperationIds."""
        self._touch(op)
        if op.id not in self.updated:
            self.updated.append(op.id)
        self.runnable = True

    def _event(self, event_type: str, op: Operation, now: float, details: dict) -> None:
        self._record(event_type, now, op, details)

    def _record(self, event_type: str, now: float, op: Operation | None, details: dict) -> None:
        self.history.append(HistoryEvent(
            event_type=event_type, event_id=len(self.history) + 1, event_timestamp=now,
            id=op.id if op is not None else None, name=op.name if op is not None else None,
            parent_id=op.parent_id if op is not None else None, sub_type=op.sub_type if op is not None else None,
            details=details))


def _payload(value: str | None) -> dict:
    return {"Payload": value if value is not None else "", "Truncated": False}


def _error(error: ErrorObject | None) -> dict:
    return msgspec.to_builtins(error) if error is not None else {}


def _event_error(error: ErrorObject | None) -> dict:
    return {"Payload": _error(error), "Truncated": False}


def _millis(op: Operation) -> dict:
    """An operation as the invocation input carries it: times in epoch milliseconds."""
    body = msgspec.to_builtins(op)
    for holder, key in ((body, "StartTimestamp"), (body, "EndTimestamp"),
                        (body.get("StepDetails"), "NextAttemptTimestamp"),
                        (body.get("WaitDetails"), "ScheduledEndTimestamp")):
        if holder is not None and holder.get(key) is not None:
            holder[key] = int(holder[key] * 1000)
    return body

"""The Lambda API's durable execution operations, as the SDK, boto3 and the AWS CLI call them
(botocore's service model for lambda, API version 2025-12-01 for these):

    POST /2025-12-01/durable-executions/{Arn}/checkpoint           CheckpointDurableExecution
    GET  /2025-12-01/durable-executions/{Arn}/state                GetDurableExecutionState
    GET  /2025-12-01/durable-executions/{Arn}                      GetDurableExecution
    GET  /2025-12-01/durable-executions/{Arn}/history              GetDurableExecutionHistory
    POST /2025-12-01/durable-executions/{Arn}/stop                 StopDurableExecution
    GET  /2025-12-01/functions/{FunctionName}/durable-executions   ListDurableExecutionsByFunction
    POST /2025-12-01/durable-execution-callbacks/{Id}/succeed|fail|heartbeat
                                                                   SendDurableExecutionCallback*

A request names an execution by its ARN (percent-encoded in the path, as botocore sends it).
Lambda's errors come back with their exception names (InvalidParameterValueException,
ResourceNotFoundException, CallbackTimeoutException), so boto3 raises them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, unquote

import msgspec

from ..invoke_api import ServiceError, parse_function_ref
from .service import Durable, DurableService
from .wire import CheckpointRequest, ErrorObject, encode

EXECUTIONS = re.compile(r"/2025-12-01/durable-executions/(?P<arn>[^/]+)(?P<operation>/checkpoint|/state|/history|/stop)?\Z")
BY_FUNCTION = re.compile(r"/2025-12-01/functions/(?P<name>[^/]+)/durable-executions\Z")
CALLBACKS = re.compile(r"/2025-12-01/durable-execution-callbacks/(?P<id>[^/]+)/(?P<operation>succeed|fail|heartbeat)\Z")
PATHS = (EXECUTIONS, BY_FUNCTION, CALLBACKS)
HISTORY_PAGE = 100
LIST_PAGE = 50
_ROUTES = {(EXECUTIONS, "POST", "/checkpoint"): "checkpoint", (EXECUTIONS, "GET", "/state"): "state",
           (EXECUTIONS, "GET", None): "get", (EXECUTIONS, "GET", "/history"): "history",
           (EXECUTIONS, "POST", "/stop"): "stop", (BY_FUNCTION, "GET", None): "list",
           (CALLBACKS, "POST", "succeed"): "succeed", (CALLBACKS, "POST", "fail"): "fail",
           (CALLBACKS, "POST", "heartbeat"): "heartbeat"}


def match(path: str) -> re.Match | None:
    for pattern in PATHS:
        found = pattern.match(path)
        if found is not None:
            return found
    return None


def _flag(query: dict, name: str, default: bool) -> bool:
    value = query.get(name, [None])[0]
    return default if value is None else value.lower() == "true"


def _count(query: dict, name: str, default: int) -> int:
    value = query.get(name, [None])[0]
    try:
        count = int(value) if value is not None else default
    except ValueError:
        raise ServiceError(400, "InvalidParameterValueException", f"{name} must be a number") from None
    if count < 1:
        raise ServiceError(400, "InvalidParameterValueException", f"{name} must be at least 1")
    return count


class DurableApi:
    def __init__(self, service: DurableService, function: Callable[[str], Durable | None]) -> None:
        self.service = service
        self.function = function  # a durable function served here, by any name it answers to

    async def handle(self, method: str, path: re.Match, query: str, body: bytes) -> tuple[int, bytes]:
        """(status, JSON body) for one request; ServiceError for Lambda's errors."""
        operation = path.groupdict().get("operation")
        route = _ROUTES.get((path.re, method, operation))
        if route is None:
            raise ServiceError(405, "UnknownOperationException", f"Unknown operation {method} {path.string}")
        params = parse_qs(query)
        return 200, encode(await getattr(self, route)(path, params, body))

    async def checkpoint(self, path, query, body: bytes) -> dict:
        try:
            request = msgspec.json.decode(body or b"{}", type=CheckpointRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ServiceError(400, "InvalidParameterValueException", f"Invalid checkpoint request: {exc}") from None
        if not request.checkpoint_token:
            raise ServiceError(400, "InvalidParameterValueException", "CheckpointToken is required")
        return await self.service.checkpoint(unquote(path["arn"]), request.checkpoint_token, request.updates,
                                             request.client_token)

    async def state(self, path, query, body: bytes) -> dict:
        token = query.get("CheckpointToken", [""])[0]
        if not token:
            raise ServiceError(400, "InvalidParameterValueException", "CheckpointToken is required")
        return await self.service.state(unquote(path["arn"]), token, query.get("Marker", [None])[0],
                                        _count(query, "MaxItems", 1000))

    async def get(self, path, query, body: bytes) -> dict:
        execution = await self.service.execution(unquote(path["arn"]))
        data = _flag(query, "IncludeExecutionData", True)
        answer = {"DurableExecutionArn": execution.arn, "DurableExecutionName": execution.name,
                  "FunctionArn": f"{execution.function_arn}:{execution.version}", "Status": execution.status,
                  "StartTimestamp": execution.start, "Version": execution.version, "ExecutionDataIncluded": data,
                  "DurableConfig": {"ExecutionTimeout": execution.execution_timeout,
                                    "RetentionPeriodInDays": execution.retention_days},
                  "ExpectedExecutionTimeoutTimestamp": execution.start + execution.timeout}
        if execution.end is not None:
            answer["EndTimestamp"] = execution.end
        if data:
            answer["InputPayload"] = execution.input_payload
            if execution.result is not None:
                answer["Result"] = execution.result
            if execution.error is not None:
                answer["Error"] = msgspec.to_builtins(execution.error)
        return answer

    async def history(self, path, query, body: bytes) -> dict:
        execution = await self.service.execution(unquote(path["arn"]))
        data = _flag(query, "IncludeExecutionData", True)
        events = list(execution.history)
        if _flag(query, "ReverseOrder", False):
            events.reverse()
        first = _count(query, "Marker", 1) - 1 if query.get("Marker") else 0
        size = _count(query, "MaxItems", HISTORY_PAGE)
        answer: dict = {"Events": [event.to_wire(data) for event in events[first:first + size]]}
        if first + size < len(events):
            answer["NextMarker"] = str(first + size + 1)
        return answer

    async def stop(self, path, query, body: bytes) -> dict:
        error = _error_body(body)
        return {"StopTimestamp": await self.service.stop(unquote(path["arn"]), error)}

    async def list(self, path, query, body: bytes) -> dict:
        found = parse_function_ref(unquote(path["name"]), query.get("Qualifier", [None])[0])
        function = self.function(found.name)
        if function is None:
            raise ServiceError(404, "ResourceNotFoundException", f"Function not found: {found.name}")
        records = await self.service.list(function.name, name=query.get("DurableExecutionName", [None])[0],
                                          statuses=tuple(query.get("Statuses", ())), limit=1_000_000)
        if _flag(query, "ReverseOrder", False):
            records.reverse()
        first = _count(query, "Marker", 1) - 1 if query.get("Marker") else 0
        size = _count(query, "MaxItems", LIST_PAGE)
        page = [{"DurableExecutionArn": r.arn, "DurableExecutionName": r.name,
                 "FunctionArn": f"{function.arn}:{function.version}", "Status": r.status, "StartTimestamp": r.started,
                 **({"EndTimestamp": r.ended} if r.ended is not None else {})} for r in records[first:first + size]]
        answer: dict = {"DurableExecutions": page}
        if first + size < len(records):
            answer["NextMarker"] = str(first + size + 1)
        return answer

    async def succeed(self, path, query, body: bytes) -> dict:
        await self.service.callback(unquote(path["id"]), result=body.decode(errors="replace"))
        return {}

    async def fail(self, path, query, body: bytes) -> dict:
        await self.service.callback(unquote(path["id"]), error=_error_body(body) or ErrorObject())
        return {}

    async def heartbeat(self, path, query, body: bytes) -> dict:
        await self.service.callback(unquote(path["id"]), heartbeat=True)
        return {}


def _error_body(body: bytes) -> ErrorObject | None:
    """The ErrorObject that is the whole body (the service model's payload member `Error`)."""
    if not body.strip():
        return None
    try:
        return msgspec.json.decode(body, type=ErrorObject)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ServiceError(400, "InvalidParameterValueException", f"Invalid request body: {exc}") from None

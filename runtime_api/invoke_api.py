"""The Lambda Invoke API (2015-03-31) as Lambda, boto3 and the AWS CLI know it.

`POST /2015-03-31/functions/{FunctionName}/invocations[?Qualifier=]` with the invocation type,
log type and client context in `X-Amz-*` headers. Function errors, timeouts and crashes are 200
with `X-Amz-Function-Error: Unhandled`; service errors are non-200 with the `x-amzn-ErrorType`
boto3 maps to its exceptions.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

import msgspec

from bootstrap import wire

from .http import Connection, Request
from .outcomes import RESTORE_HOOK_FAILED, RESTORE_TIMED_OUT, Outcome, OutcomeKind

INVOKE_PATH = re.compile(r"/2015-03-31/functions/(?P<name>[^/]+)/invocations\Z")
STREAM_INVOKE_PATH = re.compile(r"/2021-11-15/functions/(?P<name>[^/]+)/response-streaming-invocations\Z")
REQUEST_LIMIT = 6 * 1024 * 1024  # Lambda: 6 MB for synchronous invocations
EVENT_LIMIT = 1024 * 1024  # Lambda: 1 MB for asynchronous ones
CLIENT_CONTEXT_LIMIT = 3583  # bytes of base64, Lambda's documented maximum
LATEST = "$LATEST"

# Function names and ARNs Lambda accepts: name, name:qualifier, account:function:name[:qualifier],
# arn:aws:lambda:region:account:function:name[:qualifier].
_FUNCTION_REF = re.compile(
    r"(?:arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):)?(?:(?P<account>\d{12}):function:)?"
    r"(?P<name>[a-zA-Z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]{1,128}))?\Z"
)


class ServiceError(Exception):
    """An Invoke API error with its HTTP status and the error type boto3 maps to an exception."""

    def __init__(self, status: int, error_type: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.extra = extra

    def body(self) -> bytes:
        return json.dumps({"Type": "User", "message": self.message, **self.extra}).encode()


def not_found(arn: str) -> ServiceError:
    return ServiceError(404, "ResourceNotFoundException", f"Function not found: {arn}")


def restore_failed(outcome: Outcome) -> ServiceError | None:
    """The Invoke API's answer to a SnapStart restore that failed (both client faults in botocore),
    or None for any other outcome. The runtime's own error is in the function's log."""
    if outcome.kind is OutcomeKind.RESTORE_ERROR:
        return ServiceError(400, "SnapStartException", RESTORE_HOOK_FAILED)
    if outcome.kind is OutcomeKind.RESTORE_TIMEOUT:
        return ServiceError(408, "SnapStartTimeoutException", RESTORE_TIMED_OUT)
    return None


def too_many_requests() -> ServiceError:
    return ServiceError(
        429, "TooManyRequestsException", "Rate Exceeded.",
        Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
    )


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    """What an Invoke API request asks for, validated."""

    function_name: str
    qualifier: str | None
    invocation_type: str
    log_type: str | None
    client_context: str | None  # decoded JSON text
    trace_id: str | None
    tenant_id: str | None


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function as a caller names it: its name, the qualifier (from the name or the query), and
    the region and account of an ARN."""

    name: str
    qualifier: str | None
    region: str | None = None
    account: str | None = None


def parse_function_ref(text: str, query_qualifier: str | None) -> FunctionRef:
    """`text` (a name, `name:qualifier`, a partial or full ARN) with `?Qualifier=`, as Lambda reads them."""
    found = _FUNCTION_REF.match(text)
    if found is None:
        raise ServiceError(
            400, "ValidationException",
            f"1 validation error detected: Value '{text}' at 'functionName' failed to "
            "satisfy constraint: Member must satisfy regular expression pattern",
        )
    qualifier = found["qualifier"]
    if query_qualifier is not None:
        if qualifier is not None and query_qualifier != qualifier:
            raise ServiceError(400, "InvalidParameterValueException",
                               "The derived qualifier from the function name does not match the specified qualifier.")
        qualifier = query_qualifier
    return FunctionRef(found["name"], qualifier, found["region"], found["account"])


def parse_invoke_request(request: Request, name_in_path: str) -> InvokeRequest:
    query = parse_qs(request.query)
    found = parse_function_ref(unquote(name_in_path), query["Qualifier"][0] if "Qualifier" in query else None)
    invocation_type = request.header(b"x-amz-invocation-type") or "RequestResponse"
    if invocation_type not in ("RequestResponse", "Event", "DryRun"):
        raise ServiceError(400, "InvalidParameterValueException",
                           f"Unsupported invocation type {invocation_type}")
    log_type = request.header(b"x-amz-log-type")
    if log_type not in (None, "None", "Tail"):
        raise ServiceError(400, "InvalidParameterValueException", f"Unsupported log type {log_type}")
    return InvokeRequest(
        function_name=found.name,
        qualifier=found.qualifier,
        invocation_type=invocation_type,
        log_type=log_type,
        client_context=decode_client_context(request.header(b"x-amz-client-context")),
        trace_id=request.header(b"x-amzn-trace-id"),
        tenant_id=request.header(b"x-amz-tenant-id"),
    )


def decode_client_context(value: str | None) -> str | None:
    """X-Amz-Client-Context is base64 of a JSON object; the runtime receives the decoded text."""
    if value is None:
        return None
    if len(value) > CLIENT_CONTEXT_LIMIT:
        raise ServiceError(400, "InvalidParameterValueException",
                           f"Client context must be no longer than {CLIENT_CONTEXT_LIMIT} bytes")
    try:
        text = base64.b64decode(value, validate=True).decode()
        json.loads(text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ServiceError(400, "InvalidParameterValueException",
                           "Client context must be a valid Base64-encoded JSON object.") from None
    return text


def check_payload(payload: bytes, too_large: bool, limit: int) -> bytes:
    """Lambda accepts any JSON document (an empty payload is taken as `{}`) up to the limit."""
    if too_large:
        raise ServiceError(413, "RequestTooLargeException",
                           f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
    if not payload.strip():
        return b"{}"
    try:
        msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise ServiceError(400, "InvalidRequestContentException",
                           f"Could not parse request body into json: {exc}") from None
    return payload


def result_headers(request_id: str, version: str, outcome: Outcome, log_tail: bytes | None) -> list[tuple[str, str]]:
    headers = [
        ("Content-Type", wire.JSON),
        ("X-Amzn-RequestId", request_id),
        ("X-Amz-Executed-Version", version),
    ]
    if outcome.is_error:
        headers.append(("X-Amz-Function-Error", "Unhandled"))
    if log_tail is not None:
        headers.append(("X-Amz-Log-Result", base64.b64encode(log_tail).decode()))
    return headers


async def send_service_error(conn: Connection, exc: ServiceError, request_id: str) -> None:
    await conn.respond(exc.status, exc.body(), [
        ("Content-Type", wire.JSON),
        ("X-Amzn-RequestId", request_id),
        ("x-amzn-ErrorType", exc.error_type),
    ])


def is_streaming(outcome: Outcome) -> bool:
    return outcome.kind is OutcomeKind.STREAMING

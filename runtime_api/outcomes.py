"""What an invocation's caller receives: the outcome kinds, and Lambda's error bodies for them.

A leaf module: the protocol produces outcomes, the Invoke API and `lambdalet-rie` turn them into
HTTP answers, and neither needs the other to read them.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import dataclass
from typing import Any

from bootstrap import wire


class OutcomeKind(enum.Enum):
    SUCCESS = "success"  # body: the runtime's bytes
    STREAMING = "streaming"  # the body is relayed by the environment as it arrives
    FUNCTION_ERROR = "function_error"  # the runtime posted /error (or a too-large response)
    TIMEOUT = "timeout"
    EXIT_ERROR = "exit_error"  # the runtime exited (or could not start) before answering
    INIT_ERROR = "init_error"  # the runtime posted /init/error and exited
    # SnapStart: the runtime posted restore/error, or ended before its restore was done, or its
    # restore outran its limit.
    # Lambda's Invoke API answers these with its SnapStart service errors (runtime_api.invoke_api).
    RESTORE_ERROR = "restore_error"
    RESTORE_TIMEOUT = "restore_timeout"

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    body: bytes = b""
    error_type: str | None = None
    content_type: str | None = None  # a streamed response's, as the runtime sent it

    @property
    def is_error(self) -> bool:
        return self.kind not in (OutcomeKind.SUCCESS, OutcomeKind.STREAMING)



def error_json(error_type: str, message: str) -> bytes:
    """A Lambda error body, `{"errorType":…,"errorMessage":…}`, as Lambda and RIE write it."""
    return json.dumps(
        {"errorType": error_type, "errorMessage": message}, separators=(",", ":"), ensure_ascii=False
    ).encode()


RESPONSE_SIZE_TOO_LARGE = Outcome(
    OutcomeKind.FUNCTION_ERROR,
    error_json("Function.ResponseSizeTooLarge",
               f"Response payload size exceeded maximum allowed payload size ({wire.MAX_PAYLOAD_BYTES} bytes)."),
    "Function.ResponseSizeTooLarge",
)

# The Invoke API's messages for a failed SnapStart restore (botocore's SnapStartTimeoutException and
# SnapStartException).
RESTORE_TIMED_OUT = "Lambda couldn't restore the snapshot within the timeout limit."
RESTORE_HOOK_FAILED = ("The afterRestore() runtime hook encountered an error. For more information, "
                       "check the Amazon CloudWatch logs.")

RESTORE_TIMEOUT = Outcome(OutcomeKind.RESTORE_TIMEOUT, error_json("Sandbox.Timedout", RESTORE_TIMED_OUT),
                          "Sandbox.Timedout")


def timeout_outcome(request_id: str, seconds: float) -> Outcome:
    return Outcome(
        OutcomeKind.TIMEOUT,
        error_json("Sandbox.Timedout", f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds"),
        "Sandbox.Timedout",
    )


def exit_outcome(request_id: str, status: int, *, oom: bool = False) -> Outcome:
    """Lambda's answer when the runtime exits mid-invocation. An out-of-memory kill reads as any
    SIGKILL ("signal: killed") but with errorType Runtime.OutOfMemory, as Lambda reports it."""
    if status == 0:
        reason = "Runtime exited without providing a reason"
    elif status < 0:
        reason = f"Runtime exited with error: signal: {_signal_name(-status)}"
    else:
        reason = f"Runtime exited with error: exit status {status}"
    error_type = "Runtime.OutOfMemory" if oom else "Runtime.ExitError"
    return Outcome(OutcomeKind.EXIT_ERROR, error_json(error_type, f"RequestId: {request_id} Error: {reason}"), error_type)


def _signal_name(signum: int) -> str:
    # Go's wording for the common ones ("signal: killed"), the number otherwise.
    names = {9: "killed", 15: "terminated", 11: "segmentation fault", 6: "aborted", 2: "interrupt"}
    return names.get(signum, str(signum))


def extension_init_outcome(name: str, reason: str) -> Outcome:
    """An external extension failed init (it exited before it registered or asked for its first
    event, or posted init/error): Extension.InitError, and the environment is not used."""
    return Outcome(OutcomeKind.INIT_ERROR,
                   error_json("Extension.InitError", f"Extension {name} failed to initialize: {reason}"),
                   "Extension.InitError")


def extension_crash_outcome(request_id: str, name: str, reason: str, error_type: str = "Extension.Crash") -> Outcome:
    """An external extension ended during the invocation (crashed, or posted exit/error)."""
    return Outcome(OutcomeKind.EXIT_ERROR,
                   error_json(error_type, f"RequestId: {request_id} Error: extension {name} {reason}"), error_type)


def exit_reason(status: int) -> str:
    """How a process ended, in Go's words as Lambda writes them ("exit status 3", "signal: killed")."""
    return f"signal: {_signal_name(-status)}" if status < 0 else f"exit status {status}"


def invalid_entrypoint_outcome(request_id: str, reason: str) -> Outcome:
    """A runtime that cannot start: Runtime.InvalidEntrypoint with the reason."""
    return Outcome(OutcomeKind.EXIT_ERROR,
                   error_json("Runtime.InvalidEntrypoint", f"RequestId: {request_id} Error: {reason}"),
                   "Runtime.InvalidEntrypoint")


def forwarded_error_body(body: bytes, content_type: str | None) -> bytes:
    """What the caller receives for a posted /error body, as the real RIE forwards it.

    With the error-cause content type the body is re-serialised to errorMessage, errorType and a
    non-empty stackTrace, in that order; an unparsable one becomes the JSON string
    "Invalid error body". Any other body passes through byte for byte.
    """
    if content_type != wire.ERROR_CAUSE_JSON:
        return body
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError
    except ValueError:
        return b'"Invalid error body"'
    out: dict[str, Any] = {
        "errorMessage": doc.get("errorMessage", ""),
        "errorType": doc.get("errorType", ""),
    }
    if doc.get("stackTrace"):
        out["stackTrace"] = doc["stackTrace"]
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()


def error_type_of(body: bytes, header: str | None) -> str:
    """The error type of a posted error: the header if given, else the body's errorType."""
    if header:
        return header
    try:
        doc = json.loads(body)
    except ValueError:
        return "Runtime.Unknown"
    if isinstance(doc, dict) and isinstance(doc.get("errorType"), str) and doc["errorType"]:
        return doc["errorType"]
    return "Runtime.Unknown"


@dataclass(frozen=True, slots=True)
class StreamError:
    """How a streamed response failed, as its trailers tell the caller: the error type, and the
    base64 of the error body."""

    error_type: str
    body_base64: str

    @classmethod
    def of(cls, error_type: str, message: str) -> StreamError:
        return cls(error_type, base64.b64encode(error_json(error_type, message)).decode())

    def trailers(self) -> list[tuple[bytes, bytes]]:
        return [(wire.FUNCTION_ERROR_TYPE.encode(), self.error_type.encode()),
                (wire.FUNCTION_ERROR_BODY.encode(), self.body_base64.encode())]

    def body(self) -> str:
        """The error body itself (decoded), for callers that take it whole."""
        return base64.b64decode(self.body_base64).decode(errors="replace")

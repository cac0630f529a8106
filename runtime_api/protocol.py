"""The Runtime API protocol of one execution environment, with no I/O (the h11 way).

One `EnvironmentProtocol` per environment takes events — what the runtime asked for over its
Runtime API, and what happened on the host (an invocation arrived, its deadline passed, the runtime
exited) — and returns the actions to carry out: the answer to the runtime's request, the outcome to
hand to the waiting caller, and the lifecycle facts the host records (init done, cycle done).
It never awaits, never reads a clock and never touches a socket; the trio shell in `environment.py`
does that.

Two parties, two machines (style anchor H3): the runtime's state follows RIE's own state names
(they appear verbatim in `InvalidStateTransition` errors), and each invocation is settled exactly
once. The caller's side ends when the runtime posts its response or error (it is released at once,
as Lambda does); the environment's side ends only when the runtime asks for the next event, which is
the explicit "next cycle" transition.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bootstrap import wire

if TYPE_CHECKING:
    from .extensions import Extension, Extensions


class RuntimeState(enum.Enum):
    """The runtime's state; the values are RIE's names, quoted in its error messages."""

    STARTED = "Started"
    INIT_ERROR = "InitError"
    READY = "Ready"
    RUNNING = "Running"
    INVOCATION_RESPONSE = "InvocationResponse"
    INVOCATION_ERROR_RESPONSE = "InvocationErrorResponse"
    RESPONSE_SENT = "RuntimeResponseSentState"
    RESTORING = "Restoring"
    RESTORE_ERROR = "RestoreError"
    EXITED = "Exited"

    def __repr__(self) -> str:  # logs read state=READY (H6)
        return self.name


# ------------------------------------------------------------------------------------------------
# Events. Runtime-side events come from the Runtime API routes; host-side ones from the shell.


class HasRequestId(Protocol):
    request_id: str


@dataclass(frozen=True, slots=True)
class NextRequested:
    """GET /runtime/invocation/next."""


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """The headers of POST /runtime/invocation/{id}/response arrived; the body follows."""

    request_id: str
    response_mode: str | None  # the Lambda-Runtime-Function-Response-Mode header, if any


@dataclass(frozen=True, slots=True)
class ResponseFinished:
    """The body of a response has been read to its end (buffered: all of it; streaming: relayed)."""

    request_id: str
    body: bytes | None  # None when it was streamed through
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class ErrorPosted:
    """POST /runtime/invocation/{id}/error, read to its end."""

    request_id: str
    body: bytes
    content_type: str | None
    error_type: str | None  # the Lambda-Runtime-Function-Error-Type header
    too_large: bool = False


@dataclass(frozen=True, slots=True)
class InitErrorPosted:
    """POST /runtime/init/error."""

    body: bytes
    error_type: str | None


@dataclass(frozen=True, slots=True)
class RestoreNextRequested:
    """GET /runtime/restore/next (SnapStart: the runtime finished init and its before-snapshot hooks)."""


@dataclass(frozen=True, slots=True)
class RestoreErrorPosted:
    """POST /runtime/restore/error."""

    body: bytes
    error_type: str | None


@dataclass(frozen=True, slots=True)
class InvocationArrived:
    """The host hands this environment an invocation to run."""

    invocation: HasRequestId


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The invocation's deadline (or the init deadline) passed before it was settled."""

    seconds: float  # the configured timeout, for Lambda's message
    restoring: bool = False  # SnapStart: the restore (runtime load, after-restore hooks) is not over


@dataclass(frozen=True, slots=True)
class RuntimeExited:
    """The runtime process ended. `status` is its exit code, or minus the signal number; `oom`:
    the kernel killed it for exceeding the environment's memory."""

    status: int
    oom: bool = False


# ------------------------------------------------------------------------------------------------
# Actions the shell carries out, in the order returned.


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the runtime's pending request."""

    status: int
    body: bytes = b""
    content_type: str | None = None


class Park(enum.Enum):
    """The runtime's `next` waits: no invocation yet. The shell calls `next` again when woken."""

    PARK = "PARK"

    def __repr__(self) -> str:
        return "PARK"


PARK = Park.PARK


@dataclass(frozen=True, slots=True)
class Deliver:
    """Answer the runtime's `next` with this invocation's event."""

    invocation: Any


@dataclass(frozen=True, slots=True)
class Wake:
    """Wake parked `next` requests: there is an invocation for them now."""


@dataclass(frozen=True, slots=True)
class WakeExtensions:
    """Wake extensions parked in event/next: an event is queued for some of them."""


@dataclass(frozen=True, slots=True)
class DeliverExtensionEvent:
    """Answer an extension's event/next with the INVOKE event of this invocation."""

    extension: Any
    invocation: Any


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Accept the response headers; read the body (streaming: relay it to the caller)."""

    streaming: bool


@dataclass(frozen=True, slots=True)
class InitDone:
    """The runtime finished init: its first `next` (or `restore/next` under SnapStart)."""

    restore: bool = False  # True when init ended in restore/next (a snapshot point)


@dataclass(frozen=True, slots=True)
class RestoreDone:
    """The runtime finished its after-restore hooks (first `next` after restore/next)."""


@dataclass(frozen=True, slots=True)
class CycleDone:
    """The environment is idle again and can take the next invocation."""


@dataclass(frozen=True, slots=True)
class Settle:
    """Hand the waiting caller its outcome. Each invocation is settled exactly once."""

    invocation: Any
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Kill:
    """The environment cannot go on: kill the runtime's whole process tree."""

    reason: str


# ------------------------------------------------------------------------------------------------
# Outcomes, as the caller receives them. The Invoke API and lambdalet-rie map them onto HTTP.


class OutcomeKind(enum.Enum):
    SUCCESS = "success"  # body: the runtime's bytes
    STREAMING = "streaming"  # the body is relayed by the shell as it arrives
    FUNCTION_ERROR = "function_error"  # the runtime posted /error (or a too-large response)
    TIMEOUT = "timeout"
    EXIT_ERROR = "exit_error"  # the runtime exited before answering
    INIT_ERROR = "init_error"  # the runtime posted /init/error and exited
    # SnapStart: the runtime posted restore/error and exited, or its restore outran RESTORE_TIMEOUT.
    # Lambda's Invoke API answers these with its SnapStart service errors (runtime_api.invoke_api).
    RESTORE_ERROR = "restore_error"
    RESTORE_TIMEOUT = "restore_timeout"


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    body: bytes = b""
    error_type: str | None = None

    @property
    def is_error(self) -> bool:
        return self.kind not in (OutcomeKind.SUCCESS, OutcomeKind.STREAMING)


def error_json(error_type: str, message: str) -> bytes:
    """A Lambda error body, `{"errorType":…,"errorMessage":…}`, as Lambda and RIE write it."""
    return json.dumps(
        {"errorType": error_type, "errorMessage": message}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def api_error(status: int, error_type: str, message: str) -> Reply:
    """A Runtime API error answer: Go's encoder order (errorMessage first) and trailing newline."""
    body = json.dumps({"errorMessage": message, "errorType": error_type}, separators=(",", ":"))
    return Reply(status, (body + "\n").encode(), wire.JSON)


ACCEPTED = Reply(202, b'{"status":"OK"}\n', wire.JSON)
INVALID_REQUEST_ID = api_error(400, "InvalidRequestID", "Invalid request ID")
INVALID_RESPONSE_MODE = api_error(400, "InvalidFunctionResponseMode", "Invalid function response mode")
PAYLOAD_TOO_LARGE = api_error(
    413,
    "RequestEntityTooLarge",
    f"Exceeded maximum allowed payload size ({wire.MAX_PAYLOAD_BYTES} bytes).",
)
RESPONSE_SIZE_TOO_LARGE = Outcome(
    OutcomeKind.FUNCTION_ERROR,
    b'{"errorType":"Function.ResponseSizeTooLarge","errorMessage":"Response payload size exceeded '
    + f'maximum allowed payload size ({wire.MAX_PAYLOAD_BYTES} bytes)."}}'.encode(),
    "Function.ResponseSizeTooLarge",
)


def invalid_transition(source: RuntimeState, target: RuntimeState) -> Reply:
    return api_error(
        403,
        "InvalidStateTransition",
        f"State transition from {source.value} to {target.value} failed for runtime. "
        "Error: State transition is not allowed",
    )


# The Invoke API's messages for a failed SnapStart restore (botocore's SnapStartTimeoutException and
# SnapStartException).
RESTORE_TIMED_OUT = "Lambda couldn't restore the snapshot within the timeout limit."
RESTORE_HOOK_FAILED = ("The afterRestore() runtime hook encountered an error. For more information, "
                       "check the Amazon CloudWatch logs.")


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


def forwarded_error_body(body: bytes, content_type: str | None) -> bytes:
    """What the caller receives for a posted /error body (RIE observed, reference 2.4).

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


# ------------------------------------------------------------------------------------------------
# The transition table (H2): state -> event type -> next state. A missing key is an illegal
# request, answered 403 InvalidStateTransition naming the two states. Request-id checks come first
# (RIE answers an unknown id 400 whatever the state), in the funnel below.

_S = RuntimeState
TRANSITIONS: dict[RuntimeState, dict[type, RuntimeState]] = {
    _S.STARTED: {
        NextRequested: _S.READY,
        InitErrorPosted: _S.INIT_ERROR,
        RestoreNextRequested: _S.RESTORING,
    },
    _S.INIT_ERROR: {},
    _S.READY: {NextRequested: _S.READY},
    _S.RUNNING: {
        NextRequested: _S.RUNNING,  # a repeated next gets the same event again
        ResponseStarted: _S.INVOCATION_RESPONSE,
        ErrorPosted: _S.RESPONSE_SENT,
    },
    _S.INVOCATION_RESPONSE: {ResponseFinished: _S.RESPONSE_SENT},
    _S.INVOCATION_ERROR_RESPONSE: {},
    _S.RESPONSE_SENT: {NextRequested: _S.READY},
    _S.RESTORING: {NextRequested: _S.READY, RestoreErrorPosted: _S.RESTORE_ERROR},
    _S.RESTORE_ERROR: {},
    _S.EXITED: {},
}

# The state each runtime request tries to reach, for the error message of a missing key.
_TARGET: dict[type, RuntimeState] = {
    NextRequested: _S.READY,
    ResponseStarted: _S.INVOCATION_RESPONSE,
    ResponseFinished: _S.RESPONSE_SENT,
    ErrorPosted: _S.INVOCATION_ERROR_RESPONSE,
    InitErrorPosted: _S.INIT_ERROR,
    RestoreNextRequested: _S.RESTORING,
    RestoreErrorPosted: _S.RESTORE_ERROR,
}

# States a runtime can fail in before its environment's first invocation is handed over.
_FAILED_EARLY = {_S.INIT_ERROR, _S.RESTORE_ERROR, _S.EXITED}

# States in which an invocation is in flight, so its request id is "current".
_IN_FLIGHT = {_S.RUNNING, _S.INVOCATION_RESPONSE, _S.INVOCATION_ERROR_RESPONSE, _S.RESPONSE_SENT}

RuntimeEvent = (
    NextRequested | ResponseStarted | ResponseFinished | ErrorPosted | InitErrorPosted
    | RestoreNextRequested | RestoreErrorPosted
)
HostEvent = InvocationArrived | DeadlinePassed | RuntimeExited


class ProtocolError(Exception):
    """A host-side misuse of the protocol object: a lambdalet bug, never the runtime's fault."""


class EnvironmentProtocol:
    """The protocol state of one execution environment."""

    def __init__(self, extensions: Extensions | None = None) -> None:
        self.state = RuntimeState.STARTED
        self.invocation: Any = None  # the invocation in flight, or waiting for the runtime
        self._settled = False  # whether the current invocation's caller has its outcome
        self._init_error: tuple[bytes, str] | None = None  # posted by init/error or restore/error
        self._exited: RuntimeExited | None = None  # how the runtime ended, and in which state
        self._exited_from = RuntimeState.STARTED
        self.invocations = 0
        # Extensions take part in two transitions: init is over when the runtime and every
        # extension have asked for their next event; an invocation is over for the environment
        # when the runtime and every INVOKE extension have asked again.
        self.extensions = extensions
        self._init_done = False
        self._cycle_pending = False  # the runtime asked again; an extension has not yet

    def __repr__(self) -> str:
        rid = self.invocation.request_id if self.invocation is not None else None
        return f"<EnvironmentProtocol state={self.state!r} invocation={rid}>"

    @property
    def init_error(self) -> tuple[bytes, str] | None:
        """(body, error type) of what the runtime posted to init/error or restore/error, if it did."""
        return self._init_error

    @property
    def idle(self) -> bool:
        """Whether the environment can take an invocation now (no invocation held)."""
        return self.invocation is None and self.state not in (_S.EXITED, _S.INIT_ERROR, _S.RESTORE_ERROR)

    # The one funnel every event passes through (H4).
    def handle(self, event: RuntimeEvent | HostEvent) -> list[Any]:
        match event:
            case InvocationArrived():
                return self._invocation_arrived(event)
            case DeadlinePassed():
                return self._deadline_passed(event)
            case RuntimeExited():
                return self._runtime_exited(event)
        if isinstance(event, ResponseStarted | ResponseFinished | ErrorPosted):
            if self.state not in _IN_FLIGHT or event.request_id != self.invocation.request_id:
                return [INVALID_REQUEST_ID]
        target = TRANSITIONS[self.state].get(type(event))
        if target is None:
            return [invalid_transition(self.state, _TARGET[type(event)])]
        source, self.state = self.state, target
        return getattr(self, "_on_" + type(event).__name__)(event, source)

    # -- runtime events ----------------------------------------------------------------------------

    def _on_NextRequested(self, event: NextRequested, source: RuntimeState) -> list[Any]:
        actions: list[Any] = []
        if source is _S.STARTED:
            actions += self._complete_init(wake=False)
        elif source is _S.RESTORING:
            self._init_done = True
            actions.append(RestoreDone())
        elif source is _S.RESPONSE_SENT:
            self._cycle_pending = True
            actions += self._complete_cycle(wake=False)
        if self.invocation is None or not self._init_done or self._cycle_pending:
            return actions + [PARK]
        if source is not _S.RUNNING:
            self.state = _S.RUNNING
            self.invocations += 1
            if self.extensions is not None and self.extensions.by_id:
                self.extensions.invoke(self.invocation)
                actions.append(WakeExtensions())
        return actions + [Deliver(self.invocation)]

    def _complete_init(self, *, wake: bool) -> list[Any]:
        """Init is over once the runtime (now READY) and every extension asked for an event."""
        if self._init_done or self.state is not _S.READY:
            return []
        if self.extensions is not None:
            if not self.extensions.all_polled():
                return []
            self.extensions.open = False
        self._init_done = True
        return [InitDone(), Wake()] if wake else [InitDone()]

    def _complete_cycle(self, *, wake: bool) -> list[Any]:
        if not self._cycle_pending or (self.extensions is not None and not self.extensions.all_polled("INVOKE")):
            return []
        self._cycle_pending = False
        self.invocation = None
        return [CycleDone(), Wake()] if wake else [CycleDone()]

    # -- extension events (the shell identified the extension with Extensions.identify) ------------

    def extension_next(self, extension: Extension, *, woken: bool = False) -> list[Any]:
        """GET /extension/event/next: done with the last event (unless only `woken` to look
        again), and wanting the next one."""
        if extension.exited:
            return [api_error(403, "Extension.InvalidExtensionState",
                              f"State transition from ExitError to Ready failed for extension {extension.id}. "
                              "Error: Concurrent state modification")]
        actions: list[Any] = []
        if not woken:
            extension.polled = True
            actions += self._complete_init(wake=True) + self._complete_cycle(wake=True)
        if extension.pending:
            extension.polled = False
            return actions + [DeliverExtensionEvent(extension, extension.pending.popleft())]
        return actions + [PARK]

    def extension_exited(self, extension: Extension) -> list[Any]:
        """POST /extension/exit/error: it takes no part in the phases any more."""
        extension.exited = True
        extension.pending.clear()
        return [ACCEPTED, *self._complete_init(wake=True), *self._complete_cycle(wake=True)]

    def _on_ResponseStarted(self, event: ResponseStarted, source: RuntimeState) -> list[Any]:
        mode = event.response_mode
        if mode is not None and mode != wire.STREAMING:
            # RIE wedges the environment here until the timeout; we leave it RUNNING so the
            # runtime can still report an error (a named deviation in the conformance tests).
            self.state = source
            return [INVALID_RESPONSE_MODE]
        streaming = mode == wire.STREAMING
        actions: list[Any] = [ReadBody(streaming)]
        if streaming:
            actions.append(self._settle(Outcome(OutcomeKind.STREAMING)))
        return actions

    def _on_ResponseFinished(self, event: ResponseFinished, source: RuntimeState) -> list[Any]:
        if event.too_large:
            return [PAYLOAD_TOO_LARGE, self._settle(RESPONSE_SIZE_TOO_LARGE)]
        actions: list[Any] = [ACCEPTED]
        if event.body is not None:
            actions.append(self._settle(Outcome(OutcomeKind.SUCCESS, event.body)))
        return actions

    def _on_ErrorPosted(self, event: ErrorPosted, source: RuntimeState) -> list[Any]:
        if event.too_large:
            return [PAYLOAD_TOO_LARGE, self._settle(RESPONSE_SIZE_TOO_LARGE)]
        outcome = Outcome(
            OutcomeKind.FUNCTION_ERROR,
            forwarded_error_body(event.body, event.content_type),
            error_type_of(event.body, event.error_type),
        )
        return [ACCEPTED, self._settle(outcome)]

    def _on_InitErrorPosted(self, event: InitErrorPosted, source: RuntimeState) -> list[Any]:
        self._init_error = (event.body, error_type_of(event.body, event.error_type))
        return [ACCEPTED]

    def _on_RestoreNextRequested(self, event: RestoreNextRequested, source: RuntimeState) -> list[Any]:
        # Contract mode: the snapshot point is acknowledged at once and the restore begins.
        return [InitDone(restore=True), Reply(200)]

    def _on_RestoreErrorPosted(self, event: RestoreErrorPosted, source: RuntimeState) -> list[Any]:
        self._init_error = (event.body, error_type_of(event.body, event.error_type))
        return [ACCEPTED]

    # -- host events -------------------------------------------------------------------------------

    def _invocation_arrived(self, event: InvocationArrived) -> list[Any]:
        if self.invocation is None and self.invocations == 0 and self.state in _FAILED_EARLY:
            # The runtime launched for this invocation failed before it was handed over (a fast
            # restore/error, say): the invocation gets that failure.
            self.invocation = event.invocation
            self._settled = False
            if self.state is _S.EXITED:
                return [self._settle(self._failure(self._exited_from, self._exited))]
            return []  # settled once the runtime exits, as it does after init/error or restore/error
        if not self.idle:
            raise ProtocolError(f"{event.invocation.request_id} handed to a busy environment {self!r}")
        self.invocation = event.invocation
        self._settled = False
        # A runtime already parked in `next` (READY) is woken to take it; during init it is taken by
        # the runtime's first `next`.
        return [Wake()] if self.state is _S.READY else []

    def _deadline_passed(self, event: DeadlinePassed) -> list[Any]:
        if self.invocation is None:
            return []
        if self._settled:
            if self.state is _S.INVOCATION_RESPONSE:  # a streamed response still under way
                self.state = _S.EXITED
                return [Kill("timeout")]
            return []
        if event.restoring:
            outcome = Outcome(OutcomeKind.RESTORE_TIMEOUT, error_json("Sandbox.Timedout", RESTORE_TIMED_OUT),
                              "Sandbox.Timedout")
        else:
            outcome = timeout_outcome(self.invocation.request_id, event.seconds)
        self.state = _S.EXITED
        return [self._settle(outcome), Kill("timeout")]

    def _runtime_exited(self, event: RuntimeExited) -> list[Any]:
        source, self.state = self.state, _S.EXITED
        self._exited_from, self._exited = source, event
        if self.invocation is None or self._settled:
            return []
        return [self._settle(self._failure(source, event))]

    def _failure(self, source: RuntimeState, event: RuntimeExited) -> Outcome:
        """What the invocation gets from a runtime that exited (from state `source`)."""
        if self._init_error is not None and source in (_S.INIT_ERROR, _S.RESTORE_ERROR):
            body, error_type = self._init_error
            kind = OutcomeKind.INIT_ERROR if source is _S.INIT_ERROR else OutcomeKind.RESTORE_ERROR
            return Outcome(kind, body, error_type)
        return exit_outcome(self.invocation.request_id, event.status, oom=event.oom)

    def _settle(self, outcome: Outcome) -> Settle:
        if self._settled:
            raise ProtocolError(f"{self.invocation.request_id} settled twice")
        self._settled = True
        return Settle(self.invocation, outcome)

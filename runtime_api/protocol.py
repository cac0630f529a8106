"""The Runtime API protocol of one execution environment, with no I/O (the h11 way).

One `EnvironmentProtocol` per environment takes events — what the runtime and its extensions
asked for over the Runtime API, and what happened on the host (an invocation arrived, its deadline
passed, the runtime exited) — and returns the actions to carry out: the answer to the pending
request, the outcome to hand to the waiting caller, and the lifecycle facts the host records (init
done, restore started, cycle done). It never awaits, never reads a clock and never touches a
socket; the trio shell in environment.py does that, and the route handlers (runtime_routes.py)
only turn HTTP into these events and the answers back into HTTP.

Two parties, two machines, as h11 keeps a client's and a server's: the runtime's state follows RIE's own state names
(they appear verbatim in `InvalidStateTransition` errors), and each invocation is settled exactly
once. The caller's side ends when the runtime posts its response or error (it is released at once,
as Lambda does); the environment's side ends only when the runtime (and every extension subscribed
to INVOKE) asks for the next event, which is the explicit "next cycle" transition.

Every rule that decides an answer lives here: the transition table, request ids, payload and
stream limits, when a staged SnapStart copy may leave restore/next, when the credentials endpoint
answers, and the Extensions API's checks and phases: external extensions register before the
runtime starts, an extension that fails init fails the environment's init (Extension.InitError),
one that ends during an invocation fails it (Extension.Crash) and the environment is replaced, and
each SHUTDOWN-subscribed extension gets the SHUTDOWN event when the environment ends.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

from bootstrap import wire

from . import outcomes
from .extensions import Extensions, Shutdown, event_reply
from .telemetry import Telemetry
from .outcomes import (
    Outcome,
    OutcomeKind,
    StreamError,
    exit_reason,
    extension_crash_outcome,
    extension_init_outcome,
)
from .replies import (
    ACCEPTED,
    INVALID_REQUEST_ID,
    INVALID_RESPONSE_MODE,
    PAYLOAD_TOO_LARGE,
    RESTORED,
    Reply,
    api_error,
    go_text_error,
    invalid_transition,
    payload_too_large,
)

# Lambda's limit for streamed responses (buffered ones have the Runtime API's 6 MB limit).
STREAM_LIMIT_BYTES = 20 * 1024 * 1024


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

    def __repr__(self) -> str:  # logs read state=READY
        return self.name


class Start(enum.Enum):
    """How the environment's runtime comes to exist, which decides where its restore begins."""

    INIT = "init"  # launched to initialise; under SnapStart's contract restore/next is the snapshot point
    RESTORE = "restore"  # a copy of a SnapStart template: its restore began as it was made
    STAGED = "staged"  # a copy made ahead of demand: it waits in restore/next until the first invocation

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Endpoints:
    """What the metadata and credentials endpoints check and answer."""

    metadata_token: str = ""  # AWS_LAMBDA_METADATA_TOKEN
    availability_zone_id: str = "use1-az1"
    # RIE's --enable-init-caching: the credentials endpoint's answer, and its token.
    credentials: bytes | None = None
    credentials_token: str = ""


# ------------------------------------------------------------------------------------------------
# Events: plain, frozen values, compared by value. Runtime requests first, then extension requests,
# then what happens on the host.


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
    content_type: str | None = None  # its Content-Type (a streamed HTTP integration response names its own)


@dataclass(frozen=True, slots=True)
class ResponseFinished:
    """The body of a response has been read to its end: buffered, `body`; streamed (relayed to the
    caller as it came), None, with the error trailers if the runtime sent them."""

    request_id: str
    body: bytes | None
    too_large: bool = False
    error_type: str | None = None  # the Lambda-Runtime-Function-Error-Type trailer
    error_body: str | None = None  # the Lambda-Runtime-Function-Error-Body trailer (base64)


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
    """GET /runtime/restore/next (SnapStart: init and the before-snapshot hooks are done)."""


@dataclass(frozen=True, slots=True)
class RestoreErrorPosted:
    """POST /runtime/restore/error."""

    body: bytes
    error_type: str | None


@dataclass(frozen=True, slots=True)
class MetadataRequested:
    """A request to the execution-environment metadata endpoint (AWS_LAMBDA_METADATA_API)."""

    method: str
    authorization: str | None


@dataclass(frozen=True, slots=True)
class CredentialsRequested:
    """GET /2021-04-23/credentials (RIE's --enable-init-caching)."""

    authorization: str | None


@dataclass(frozen=True, slots=True)
class ExtensionRegisterRequested:
    """POST /extension/register."""

    name: str | None  # the Lambda-Extension-Name header
    body: bytes
    accept_feature: str | None = None  # the Lambda-Extension-Accept-Feature header


@dataclass(frozen=True, slots=True)
class ExtensionNextRequested:
    """GET /extension/event/next."""

    identifier: str | None  # the Lambda-Extension-Identifier header


@dataclass(frozen=True, slots=True)
class ExtensionErrorPosted:
    """POST /extension/init/error, or /extension/exit/error (`exiting`)."""

    identifier: str | None
    error_type: str | None  # the Lambda-Extension-Function-Error-Type header
    exiting: bool


@dataclass(frozen=True, slots=True)
class TelemetrySubscribeRequested:
    """PUT /2022-07-01/telemetry (`api` Telemetry) or PUT /2020-08-15/logs (`api` Logs), at
    `now` on the host's clock."""

    api: str
    identifier: str | None  # the Lambda-Extension-Identifier header
    body: bytes
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class ExtensionExited:
    """An external extension's process ended; `status` as RuntimeExited's."""

    name: str
    status: int


@dataclass(frozen=True, slots=True)
class ShutdownStarted:
    """The environment ends (Lambda's Shutdown phase): `reason` is `spindown`, `timeout` or
    `failure`, and its extensions may run until `deadline_ms` (epoch milliseconds)."""

    reason: str
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class InvocationArrived:
    """The host hands this environment an invocation to run."""

    invocation: HasRequestId


@dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The invocation's deadline (or the init or restore deadline) passed before it was settled."""

    seconds: float  # the configured timeout, for Lambda's message


@dataclass(frozen=True, slots=True)
class ResponseAborted:
    """A streamed response's connection broke before the stream ended (the runtime went away, or
    the environment is stopping)."""

    request_id: str


@dataclass(frozen=True, slots=True)
class RuntimeExited:
    """The runtime process ended. `status` is its exit code, or minus the signal number; `oom`:
    the kernel killed it for exceeding the environment's memory."""

    status: int
    oom: bool = False


RuntimeEvent = (
    NextRequested | ResponseStarted | ResponseFinished | ErrorPosted | InitErrorPosted
    | RestoreNextRequested | RestoreErrorPosted
)
ExtensionEvent = (ExtensionRegisterRequested | ExtensionNextRequested | ExtensionErrorPosted
                  | TelemetrySubscribeRequested)
HostEvent = InvocationArrived | DeadlinePassed | ResponseAborted | RuntimeExited | ExtensionExited | ShutdownStarted
Event = RuntimeEvent | ExtensionEvent | MetadataRequested | CredentialsRequested | HostEvent


# ------------------------------------------------------------------------------------------------
# Actions the shell carries out, in the order returned. `Reply`, `PARK`, `Deliver` and `ReadBody`
# answer the pending request; the others are for the host.


class Park(enum.Enum):
    """The request waits (`next` with no invocation yet, a staged copy's restore/next): the shell
    hands the same event in again, `woken`, when a `Wake` comes."""

    PARK = "PARK"

    def __repr__(self) -> str:
        return "PARK"


PARK = Park.PARK


@dataclass(frozen=True, slots=True)
class Deliver:
    """Answer the runtime's `next` with this invocation's event."""

    invocation: Any


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Accept the response headers; read the body, up to `limit` bytes (streaming: relay it to the
    caller as it arrives, and no more than `limit` of it)."""

    streaming: bool
    limit: int = wire.MAX_PAYLOAD_BYTES


@dataclass(frozen=True, slots=True)
class Wake:
    """Wake parked runtime requests: there is something for them now."""


@dataclass(frozen=True, slots=True)
class WakeExtensions:
    """Wake extensions parked in event/next: an event is queued for some of them."""


@dataclass(frozen=True, slots=True)
class InitDone:
    """The runtime is past init: its first `next`, or its restore/next. `snapshot`: init ended at
    SnapStart's snapshot point (the contract's restore/next), which Lambda reports."""

    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class RestoreStarted:
    """The restore begins now: at the snapshot point (SnapStart's contract), or when a staged copy
    is wanted. (A copy made for an invocation began its restore as it was made.)"""


@dataclass(frozen=True, slots=True)
class RestoreDone:
    """The runtime finished its after-restore hooks (its first `next` after restore/next)."""


@dataclass(frozen=True, slots=True)
class CycleDone:
    """The environment is idle again and can take the next invocation."""


@dataclass(frozen=True, slots=True)
class RuntimeFinished:
    """The runtime asked for its next event after answering; INVOKE extensions still work (Lambda's
    PostRuntimeExtensionsDuration runs from now until CycleDone)."""


@dataclass(frozen=True, slots=True)
class Registered:
    """An extension registered, for these events."""

    name: str
    events: tuple[str, ...]
    external: bool


@dataclass(frozen=True, slots=True)
class Subscribed:
    """An extension subscribed to telemetry: deliver it (telemetry.Telemetry.subscribers[name])."""

    name: str


@dataclass(frozen=True, slots=True)
class ExtensionsRegistered:
    """Every external extension has registered: the runtime starts now."""


@dataclass(frozen=True, slots=True)
class Settle:
    """Hand the waiting caller its outcome. Each invocation is settled exactly once."""

    invocation: Any
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class EndStream:
    """A streamed response ended: with this error (trailers to the caller), or None if it ended well."""

    invocation: Any
    error: StreamError | None


@dataclass(frozen=True, slots=True)
class Kill:
    """The environment cannot go on: kill the runtime's whole process tree."""

    reason: str


@dataclass(frozen=True, slots=True)
class DeadlineSuspended:
    """The deadline passed while debugging: the invocation goes on (the host says so)."""

    seconds: float


Action = (
    Reply | Park | Deliver | ReadBody | Wake | WakeExtensions | InitDone | RestoreStarted | RestoreDone
    | CycleDone | RuntimeFinished | Registered | Subscribed | ExtensionsRegistered | Settle | EndStream | Kill
    | DeadlineSuspended
)
Answer = Reply | Park | Deliver | ReadBody  # what answers a pending request


# ------------------------------------------------------------------------------------------------
# The transition table: state -> runtime event type -> next state. A missing key is an illegal
# request, answered 403 InvalidStateTransition naming the two states. Request-id checks come first
# (RIE answers an unknown id 400 whatever the state), in `handle`.

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


class ProtocolError(Exception):
    """A host-side misuse of the protocol object: a lambdalet bug, never the runtime's fault."""


class EnvironmentProtocol:
    """The protocol state of one execution environment."""

    def __init__(self, extensions: Extensions | None = None, *, start: Start = Start.INIT,
                 endpoints: Endpoints = Endpoints(), debugging: bool = False,
                 telemetry: Telemetry | None = None) -> None:
        self.state = RuntimeState.STARTED
        self.invocation: Any = None  # the invocation in flight, or waiting for the runtime
        self._settled = False  # whether the current invocation's caller has its outcome
        self._streaming = False  # the current response is streamed
        self._init_error: tuple[bytes, str] | None = None  # posted by init/error or restore/error
        self._exited: RuntimeExited | None = None  # how the runtime ended, and in which state
        self._exited_from = RuntimeState.STARTED
        self.invocations = 0
        self.start = start
        # The restore is under way: from the copy's making, from a staged copy's first
        # invocation, or from the snapshot point (contract); until the runtime's first `next`.
        self.restoring = start is Start.RESTORE
        self._staged = start is Start.STAGED
        self._endpoints = endpoints
        # A debugger may hold the runtime at a breakpoint for as long as it likes: no deadline (init's,
        # the restore's or the invocation's) ends an invocation then.
        self.debugging = debugging
        # Extensions take part in two transitions: init is over when the runtime and every
        # extension have asked for their next event; an invocation is over for the environment
        # when the runtime and every INVOKE extension have asked again.
        self.extensions = extensions if extensions is not None else Extensions("", "", "")
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.initialised = False  # past init: InitDone was given (the first `next`, or restore/next)
        self._serving = False  # invocations may be delivered: init (and any restore) is over
        self._cycle_pending = False  # the runtime asked again; an extension has not yet
        self._extension_failure: Outcome | None = None  # an external extension failed the environment
        self.shutting_down = False  # the Shutdown phase began

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

    @property
    def staged(self) -> bool:
        """A staged copy not wanted yet: it waits in restore/next."""
        return self._staged

    def handle(self, event: Event, *, woken: bool = False) -> list[Action]:
        """The one funnel every event passes through. `woken`: a parked request handed in
        again after a `Wake`."""
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            return handler(self, event, woken)
        if isinstance(event, ResponseStarted | ResponseFinished | ErrorPosted):
            if self.state not in _IN_FLIGHT or event.request_id != self.invocation.request_id:
                return [INVALID_REQUEST_ID]
        rule = _RULES.get(type(event))
        if rule is not None and (refused := rule(self, event, woken)) is not None:
            return refused
        target = TRANSITIONS[self.state].get(type(event))
        if target is None:
            return [invalid_transition(self.state.value, _TARGET[type(event)].value)]
        source, self.state = self.state, target
        return _TRANSITION_ACTIONS[type(event)](self, event, source)

    # -- rules checked before a transition (None: go on) -------------------------------------------

    def _may_restore(self, event: RestoreNextRequested, woken: bool) -> list[Action] | None:
        # A staged copy waits in restore/next, where Lambda takes its snapshot, until it is wanted.
        return [PARK] if self._staged else None

    # -- runtime requests (after the transition) ---------------------------------------------------

    def _on_next(self, event: NextRequested, source: RuntimeState) -> list[Action]:
        actions: list[Action] = []
        if source is _S.STARTED:
            actions += self._complete_init(wake=False)
        elif source is _S.RESTORING:
            self._serving = True
            self.restoring = False
            actions.append(RestoreDone())
        elif source is _S.RESPONSE_SENT:
            self._cycle_pending = True
            # The cycle is done now, or once INVOKE extensions have asked again (from now on).
            actions += self._complete_cycle(wake=False) or [RuntimeFinished()]
        if self.invocation is None or not self._serving or self._cycle_pending:
            return actions + [PARK]
        if source is not _S.RUNNING:
            self.state = _S.RUNNING
            self.invocations += 1
            if self.extensions.invoke(self.invocation):
                actions.append(WakeExtensions())
        return actions + [Deliver(self.invocation)]

    def _on_response_started(self, event: ResponseStarted, source: RuntimeState) -> list[Action]:
        mode = event.response_mode
        if mode is not None and mode != wire.STREAMING:
            # RIE wedges the environment here until the timeout; we leave it RUNNING so the
            # runtime can still report an error (a named deviation in the conformance tests).
            self.state = source
            return [INVALID_RESPONSE_MODE]
        self._streaming = mode == wire.STREAMING
        if self._streaming:
            return [ReadBody(True, STREAM_LIMIT_BYTES),
                    self._settle(Outcome(OutcomeKind.STREAMING, content_type=event.content_type))]
        return [ReadBody(False)]

    def _on_response_finished(self, event: ResponseFinished, source: RuntimeState) -> list[Action]:
        if self._streaming:
            return self._stream_finished(event)
        if event.too_large:
            return [PAYLOAD_TOO_LARGE, self._settle(outcomes.RESPONSE_SIZE_TOO_LARGE)]
        return [ACCEPTED, self._settle(Outcome(OutcomeKind.SUCCESS, event.body or b""))]

    def _stream_finished(self, event: ResponseFinished) -> list[Action]:
        """The caller already has the stream; how it ended goes to it as trailers."""
        self._streaming = False
        reply = ACCEPTED
        if event.too_large:
            reply = payload_too_large(STREAM_LIMIT_BYTES)
            error = StreamError.of("Function.ResponseSizeTooLarge",
                                   f"Response payload size exceeded maximum allowed payload size "
                                   f"({STREAM_LIMIT_BYTES} bytes).")
        elif event.error_type:
            error = StreamError(event.error_type, event.error_body or "")
        else:
            error = None
        return [reply, EndStream(self.invocation, error)]

    def _on_error_posted(self, event: ErrorPosted, source: RuntimeState) -> list[Action]:
        if event.too_large:
            return [PAYLOAD_TOO_LARGE, self._settle(outcomes.RESPONSE_SIZE_TOO_LARGE)]
        outcome = Outcome(
            OutcomeKind.FUNCTION_ERROR,
            outcomes.forwarded_error_body(event.body, event.content_type),
            outcomes.error_type_of(event.body, event.error_type),
        )
        return [ACCEPTED, self._settle(outcome)]

    def _on_init_error_posted(self, event: InitErrorPosted, source: RuntimeState) -> list[Action]:
        self._init_error = (event.body, outcomes.error_type_of(event.body, event.error_type))
        return [ACCEPTED]

    def _on_restore_next(self, event: RestoreNextRequested, source: RuntimeState) -> list[Action]:
        self.initialised = True
        if self.start is not Start.INIT:  # a copy: its restore began as it was made, or was wanted
            return [InitDone(), RESTORED]
        # SnapStart's contract: the snapshot point, and the restore begins.
        self.restoring = True
        return [InitDone(snapshot=True), RestoreStarted(), RESTORED]

    def _on_restore_error_posted(self, event: RestoreErrorPosted, source: RuntimeState) -> list[Action]:
        self._init_error = (event.body, outcomes.error_type_of(event.body, event.error_type))
        return [ACCEPTED]

    def _complete_init(self, *, wake: bool) -> list[Action]:
        """Init is over once the runtime (now READY) and every extension asked for an event."""
        if self._serving or self.state is not _S.READY or not self.extensions.all_done():
            return []
        self.extensions.close_registration()
        self.initialised = self._serving = True
        return [InitDone(), Wake()] if wake else [InitDone()]

    def _complete_cycle(self, *, wake: bool) -> list[Action]:
        if not self._cycle_pending or not self.extensions.all_done("INVOKE"):
            return []
        self._cycle_pending = False
        self.invocation = None
        return [CycleDone(), Wake()] if wake else [CycleDone()]

    # -- the metadata and credentials endpoints ---------------------------------------------------

    def _on_metadata(self, event: MetadataRequested, woken: bool) -> list[Action]:
        if event.method != "GET":
            return [go_text_error(405, "Method Not Allowed")]
        if event.authorization != f"Bearer {self._endpoints.metadata_token}":
            return [go_text_error(401, "Unauthorized")]
        body = b'{"AvailabilityZoneID":"%s"}' % self._endpoints.availability_zone_id.encode()
        return [Reply(200, body, wire.JSON, (("Cache-Control", "private, max-age=43200, immutable"),))]

    def _on_credentials(self, event: CredentialsRequested, woken: bool) -> list[Action]:
        # Only once the runtime is initialised, and only for the token the runtime was given.
        if not self.initialised or event.authorization != self._endpoints.credentials_token:
            return [go_text_error(404, "cannot get credentials for the provided token")]
        # text/plain, as Go's net/http sniffs the body RIE writes without a type.
        return [Reply(200, self._endpoints.credentials or b"", "text/plain; charset=utf-8")]

    # -- extension requests ------------------------------------------------------------------------

    def _on_extension_register(self, event: ExtensionRegisterRequested, woken: bool) -> list[Action]:
        reply = self.extensions.register(event.name, event.body, event.accept_feature)
        if reply.status != 200:
            return [reply]
        extension = self.extensions.named(event.name)
        actions: list[Action] = [reply, Registered(extension.name, tuple(sorted(extension.events)), extension.external)]
        if extension.external and not self.extensions.unregistered():
            actions.append(ExtensionsRegistered())
        return actions

    def _on_extension_next(self, event: ExtensionNextRequested, woken: bool) -> list[Action]:
        """Done with the last event (unless only `woken` to look again), and wanting the next one."""
        extension = self.extensions.identify(event.identifier)
        if isinstance(extension, Reply):
            return [extension]
        if extension.exited:
            return [api_error(403, "Extension.InvalidExtensionState",
                              f"State transition from ExitError to Ready failed for extension {extension.id}. "
                              "Error: Concurrent state modification")]
        actions: list[Action] = []
        if not woken:
            extension.poll()
            actions += self._complete_init(wake=True) + self._complete_cycle(wake=True)
        pending = extension.take_event()
        if pending is not None:
            return actions + [event_reply(pending)]
        return actions + [PARK]

    def _on_extension_error(self, event: ExtensionErrorPosted, woken: bool) -> list[Action]:
        extension = self.extensions.identify(event.identifier)
        if isinstance(extension, Reply):
            return [extension]
        if event.error_type is None:
            return [api_error(403, "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found")]
        if extension.external and not self.shutting_down:
            # Lambda fails the environment: at init, its init; later, the invocation in flight.
            if not self.initialised:
                extension.exit()
                return [ACCEPTED, *self._fail(extension_init_outcome(extension.name, f"it reported {event.error_type}"))]
            if event.exiting:
                extension.exit()
                return [ACCEPTED, *self._fail_invocation(extension.name, f"exited with error {event.error_type}",
                                                         "Extension.ExitError")]
        if not event.exiting:
            return [ACCEPTED]
        extension.exit()
        return [ACCEPTED, *self._complete_init(wake=True), *self._complete_cycle(wake=True)]

    def _on_subscribe(self, event: TelemetrySubscribeRequested, woken: bool) -> list[Action]:
        """A Telemetry (or Logs) API subscription: only from a registered extension, during init."""
        extension = self.extensions.identify(event.identifier)
        if isinstance(extension, Reply):
            return [extension]
        reply = self.telemetry.subscribe(event.api, extension.name, event.body, event.now, open=not self.initialised)
        return [reply, Subscribed(extension.name)] if reply.status == 200 else [reply]

    def _on_extension_exited(self, event: ExtensionExited, woken: bool) -> list[Action]:
        extension = self.extensions.named(event.name)
        if extension is not None:
            extension.exit()
        if self.shutting_down or self._extension_failure is not None:
            return []  # ending as it should, or after the environment failed already
        if not self.initialised:
            why = "it exited before it registered" if extension is None else "it exited during init"
            return self._fail(extension_init_outcome(event.name, f"{why} ({exit_reason(event.status)})"))
        return self._fail_invocation(event.name, f"crashed: {exit_reason(event.status)}", "Extension.Crash")

    def _fail_invocation(self, name: str, reason: str, error_type: str) -> list[Action]:
        """An extension ended the environment after init: the invocation in flight fails (unless
        its caller has its answer already) and the environment is replaced."""
        if self.invocation is None or self._settled:
            return self._fail(None)
        return self._fail(extension_crash_outcome(self.invocation.request_id, name, reason, error_type))

    def _fail(self, outcome: Outcome | None) -> list[Action]:
        """The environment cannot go on: the waiting caller (if any) gets `outcome`, and so does
        an invocation that finds it failed; the environment is stopped."""
        self._extension_failure = outcome or self._extension_failure or Outcome(OutcomeKind.EXIT_ERROR)
        self._exited_from, self.state = self.state, _S.EXITED
        actions: list[Action] = []
        if outcome is not None and self.invocation is not None and not self._settled:
            actions.append(self._settle(outcome))
        return actions + [Kill("failure")]

    def _on_shutdown_started(self, event: ShutdownStarted, woken: bool) -> list[Action]:
        self.shutting_down = True
        return [WakeExtensions()] if self.extensions.shutdown(Shutdown(event.reason, event.deadline_ms)) else []

    # -- host events -------------------------------------------------------------------------------

    def _on_invocation_arrived(self, event: InvocationArrived, woken: bool) -> list[Action]:
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
        if self._staged:
            # The staged copy is wanted: its restore begins, and its restore/next is answered.
            self._staged = False
            self.restoring = True
            return [RestoreStarted(), Wake()]
        # A runtime already parked in `next` (READY) is woken to take it; during init it is taken by
        # the runtime's first `next`.
        return [Wake()] if self.state is _S.READY else []

    def _on_deadline_passed(self, event: DeadlinePassed, woken: bool) -> list[Action]:
        if self.invocation is None:
            return []
        if self.debugging and not self._settled:
            return [DeadlineSuspended(event.seconds)]
        if self._settled:
            if self.state is _S.INVOCATION_RESPONSE:  # a streamed response still under way
                self.state = _S.EXITED
                return [Kill("timeout")]
            if self.extensions.holds_cycles() and self.state is not _S.EXITED:
                # Extensions still at work after the response: the invoke phase, theirs included,
                # ends at the function's timeout (Lambda's rule).
                self.state = _S.EXITED
                return [Kill("timeout")]
            return []
        if self.restoring:
            outcome = outcomes.RESTORE_TIMEOUT
        else:
            outcome = outcomes.timeout_outcome(self.invocation.request_id, event.seconds)
        self.state = _S.EXITED
        return [self._settle(outcome), Kill("timeout")]

    def _on_response_aborted(self, event: ResponseAborted, woken: bool) -> list[Action]:
        # The state stays: the runtime can still be killed by the deadline, or exit.
        if not self._streaming or self.invocation is None or event.request_id != self.invocation.request_id:
            return []
        self._streaming = False
        return [EndStream(self.invocation, StreamError.of(
            "Runtime.ExitError",
            f"RequestId: {self.invocation.request_id} Error: Runtime exited while streaming its response"))]

    def _on_runtime_exited(self, event: RuntimeExited, woken: bool) -> list[Action]:
        source, self.state = self.state, _S.EXITED
        self._exited_from, self._exited = source, event
        if self.invocation is None or self._settled:
            return []
        return [self._settle(self._failure(source, event))]

    def _failure(self, source: RuntimeState, event: RuntimeExited | None) -> Outcome:
        """What the invocation gets from a runtime that exited (from state `source`), or from an
        environment an extension failed."""
        if self._extension_failure is not None and self._extension_failure.body:
            return self._extension_failure
        if self._init_error is not None and source in (_S.INIT_ERROR, _S.RESTORE_ERROR):
            body, error_type = self._init_error
            kind = OutcomeKind.INIT_ERROR if source is _S.INIT_ERROR else OutcomeKind.RESTORE_ERROR
            return Outcome(kind, body, error_type)
        if event is None:  # the environment was stopped before its runtime ran
            return outcomes.exit_outcome(self.invocation.request_id, -9)
        exited = outcomes.exit_outcome(self.invocation.request_id, event.status, oom=event.oom)
        if self.restoring:  # a copy that ended before its restore was done: Lambda's failed restore
            return dataclasses.replace(exited, kind=OutcomeKind.RESTORE_ERROR)
        return exited

    def _settle(self, outcome: Outcome) -> Settle:
        if self._settled:
            raise ProtocolError(f"{self.invocation.request_id} settled twice")
        self._settled = True
        return Settle(self.invocation, outcome)


# Dispatch tables (no string-built method names): events outside the runtime's transition table,
# the rules checked before a transition, and what each transition does.
_Handler = Callable[[EnvironmentProtocol, Any, bool], list[Action]]
_HANDLERS: dict[type, _Handler] = {
    InvocationArrived: EnvironmentProtocol._on_invocation_arrived,
    DeadlinePassed: EnvironmentProtocol._on_deadline_passed,
    ResponseAborted: EnvironmentProtocol._on_response_aborted,
    RuntimeExited: EnvironmentProtocol._on_runtime_exited,
    MetadataRequested: EnvironmentProtocol._on_metadata,
    CredentialsRequested: EnvironmentProtocol._on_credentials,
    ExtensionRegisterRequested: EnvironmentProtocol._on_extension_register,
    ExtensionNextRequested: EnvironmentProtocol._on_extension_next,
    ExtensionErrorPosted: EnvironmentProtocol._on_extension_error,
    ExtensionExited: EnvironmentProtocol._on_extension_exited,
    TelemetrySubscribeRequested: EnvironmentProtocol._on_subscribe,
    ShutdownStarted: EnvironmentProtocol._on_shutdown_started,
}
_RULES: dict[type, Callable[[EnvironmentProtocol, Any, bool], list[Action] | None]] = {
    RestoreNextRequested: EnvironmentProtocol._may_restore,
}
_TRANSITION_ACTIONS: dict[type, Callable[[EnvironmentProtocol, Any, RuntimeState], list[Action]]] = {
    NextRequested: EnvironmentProtocol._on_next,
    ResponseStarted: EnvironmentProtocol._on_response_started,
    ResponseFinished: EnvironmentProtocol._on_response_finished,
    ErrorPosted: EnvironmentProtocol._on_error_posted,
    InitErrorPosted: EnvironmentProtocol._on_init_error_posted,
    RestoreNextRequested: EnvironmentProtocol._on_restore_next,
    RestoreErrorPosted: EnvironmentProtocol._on_restore_error_posted,
}

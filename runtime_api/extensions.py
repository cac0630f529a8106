"""The Extensions API (2020-01-01) of one environment, with no I/O: registration, the events each
extension waits for, and whether every extension is done with the current phase.

Lambda's rules, as the real RIE applies them (AWS Lambda Developer Guide, "Lambda Extensions
API"): extensions register during init only; init is over when the runtime and every extension
have asked for their next event; an invocation is over for the environment when the runtime and
every extension subscribed to INVOKE have asked again.

Two kinds: an external extension is an executable of /opt/extensions, started by the environment
before its runtime (`external` names them: an extension registers under its file name), and may
subscribe to SHUTDOWN too; any other name registers an internal extension (one the runtime runs
inside itself), which may subscribe to INVOKE only.

The protocol (protocol.py) calls these methods; it never changes an extension's fields itself.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from bootstrap import wire

from .gojson import go_json_error
from .invocation import new_request_id
from .replies import Reply, api_error

MAX_EXTENSIONS = 10
EVENT_TYPES = frozenset({"INVOKE", "SHUTDOWN"})
IDENTIFIER_HEADER = "Lambda-Extension-Identifier"
EVENT_IDENTIFIER_HEADER = "Lambda-Extension-Event-Identifier"
ACCEPT_FEATURE_HEADER = "Lambda-Extension-Accept-Feature"
# One encoder for every event: json.dumps builds a new one for each call given separators.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The SHUTDOWN event: why the environment ends (Lambda's `spindown`, `timeout` or `failure`)
    and until when, in epoch milliseconds, its extensions may run."""

    reason: str
    deadline_ms: int


class Extension:
    """One registered extension: which events it wants, and where it is in the current phase."""

    __slots__ = ("id", "name", "events", "external", "_polled", "_exited", "_pending")

    def __init__(self, name: str, events: frozenset[str], external: bool = False) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.events = events
        self.external = external
        self._polled = False  # asking for its next event: done with the one before
        self._exited = False  # posted exit/error (or, external, its process ended)
        self._pending: deque[Any] = deque()  # its events not yet taken: invocations (INVOKE), a Shutdown

    def __repr__(self) -> str:
        return f"<Extension {self.name} {self.id}>"

    @property
    def exited(self) -> bool:
        return self._exited

    def wants(self, event_type: str) -> bool:
        return event_type in self.events and not self._exited

    def done(self) -> bool:
        """Done with its last event: asking for the next one, or gone."""
        return self._polled or self._exited

    def poll(self) -> None:
        """It asked for its next event: it is done with the one before."""
        self._polled = True

    def queue(self, event: Any) -> None:
        """An invocation starts (its INVOKE event), or the environment ends (a Shutdown): the event
        waits for this extension."""
        self._pending.append(event)
        self._polled = False

    def take_event(self) -> Any | None:
        """The event it gets now (an invocation, for its INVOKE event, or a Shutdown), if one
        waits; from then on it is busy."""
        if not self._pending:
            return None
        self._polled = False
        return self._pending.popleft()

    def exit(self) -> None:
        """It posted exit/error: it takes no part in the phases any more."""
        self._exited = True
        self._pending.clear()


class Extensions:
    """The environment's registered extensions."""

    def __init__(self, function_name: str, function_version: str, handler: str, *,
                 external: tuple[str, ...] = (), account_id: str = "") -> None:
        self._metadata = {"functionName": function_name, "functionVersion": function_version, "handler": handler}
        self.account_id = account_id  # given to an extension that accepts the `accountId` feature
        self.external = external  # the file names of the external extensions started with the runtime
        self.by_id: dict[str, Extension] = {}
        self._open = True  # registration closes when init is over

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def close_registration(self) -> None:
        self._open = False

    def register(self, name: str | None, body: bytes, accept_feature: str | None = None) -> Reply:
        """POST /extension/register: the 200 answer, carrying the new extension's identifier, or
        the error RIE gives. An extension that accepts the `accountId` feature is told the
        function's account, where there is one (RIE has none, and says nothing)."""
        if not name:
            return api_error(403, "Extension.InvalidExtensionName", "Empty extension name")
        if not self._open:
            return api_error(403, "Extension.RegistrationClosed", "Extension registration closed already")
        try:
            request = json.loads(body)
        except ValueError:
            return api_error(403, "InvalidRequestFormat", go_json_error(body))
        if not isinstance(request, dict):
            return api_error(403, "InvalidRequestFormat", "json: cannot unmarshal into Go value of type rapi.RegisterRequest")
        if request.get("configurationKeys"):
            return api_error(403, "InvalidRequestFormat", "configurationKeys are deprecated; use environment variables instead")
        events = request.get("events") or []
        external = name in self.external
        for event in events:
            if event == "SHUTDOWN" and not external:
                return api_error(403, "Extension.InvalidEventType", "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension")
            if event not in EVENT_TYPES:
                return api_error(403, "Extension.InvalidEventType", f"{event}: InvalidEventType")
        if any(ext.name == name for ext in self.by_id.values()):
            return api_error(403, "Extension.InvalidExtensionState", "Extension with this name already registered")
        if len(self.by_id) >= MAX_EXTENSIONS:
            return api_error(403, "Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached")
        extension = Extension(name, frozenset(events), external)
        self.by_id[extension.id] = extension
        metadata = dict(self._metadata)
        features = {feature.strip() for feature in (accept_feature or "").split(",")}
        if "accountId" in features and self.account_id:
            metadata["accountId"] = self.account_id
        body = (json.dumps(metadata, separators=(",", ":")) + "\n").encode()
        return Reply(200, body, wire.JSON, ((IDENTIFIER_HEADER, extension.id),))

    def named(self, name: str) -> Extension | None:
        return next((ext for ext in self.by_id.values() if ext.name == name), None)

    def unregistered(self) -> list[str]:
        """The external extensions that have not registered yet: the runtime starts once none is."""
        return [name for name in self.external if self.named(name) is None]

    def identify(self, identifier: str | None) -> Extension | Reply:
        """The extension a request's Lambda-Extension-Identifier names, or RIE's error for it."""
        if not identifier:
            return api_error(403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header")
        extension = self.by_id.get(identifier)
        if extension is not None:  # a known identifier is one of ours, a UUID: no need to parse it again
            return extension
        try:
            uuid.UUID(identifier)
        except ValueError:
            return api_error(403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier")
        return api_error(403, "Extension.UnknownExtensionIdentifier", f"Unknown extension {identifier}")

    def all_done(self, subscribed_to: str | None = None) -> bool:
        """Whether every (live, and if given, subscribed) extension is done with its last event."""
        return all(ext.done() for ext in self.by_id.values() if subscribed_to is None or subscribed_to in ext.events)

    def holds_cycles(self) -> bool:
        """Whether an extension takes part in each invocation (subscribed to INVOKE): the
        environment is reused only once it asks for its next event."""
        return any(ext.wants("INVOKE") for ext in self.by_id.values())

    def invoke(self, invocation: Any) -> bool:
        """An invocation starts: INVOKE-subscribed extensions get its event. Whether any will."""
        return self._queue("INVOKE", invocation)

    def shutdown(self, shutdown: Shutdown) -> bool:
        """The environment ends: SHUTDOWN-subscribed extensions get the event. Whether any will."""
        return self._queue("SHUTDOWN", shutdown)

    def _queue(self, event_type: str, event: Any) -> bool:
        waiting = [ext for ext in self.by_id.values() if ext.wants(event_type)]
        for ext in waiting:
            ext.queue(event)
        return bool(waiting)


def event_reply(event: Any) -> Reply:
    """An extension's event/next answered: with the SHUTDOWN event, or an invocation's INVOKE event."""
    if isinstance(event, Shutdown):
        body = {"eventType": "SHUTDOWN", "shutdownReason": event.reason, "deadlineMs": event.deadline_ms}
    else:
        body = {"eventType": "INVOKE", "deadlineMs": event.deadline_ms, "requestId": event.request_id,
                "invokedFunctionArn": event.function_arn,
                "tracing": {"type": "X-Amzn-Trace-Id", "value": event.trace_id}}
    return Reply(200, _COMPACT.encode(body).encode(), wire.JSON,
                 ((EVENT_IDENTIFIER_HEADER, new_request_id()),))

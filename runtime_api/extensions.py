"""The Extensions API (2020-01-01) of one environment, with no I/O: registration, the events each
extension waits for, and whether every extension is done with the current phase.

Lambda's rules, as the real RIE applies them (AWS Lambda Developer Guide, "Lambda Extensions
API"): extensions register during init only; init is over when the runtime and every extension
have asked for their next event; an invocation is over for the environment when the runtime and
every extension subscribed to INVOKE have asked again. Extensions here are internal ones
(registered from inside the runtime), which may subscribe to INVOKE only.

The protocol (protocol.py) calls these methods; it never changes an extension's fields itself.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from typing import Any

from bootstrap import wire

from .gojson import go_json_error
from .replies import Reply, api_error

MAX_EXTENSIONS = 10
EVENT_TYPES = frozenset({"INVOKE", "SHUTDOWN"})
IDENTIFIER_HEADER = "Lambda-Extension-Identifier"
EVENT_IDENTIFIER_HEADER = "Lambda-Extension-Event-Identifier"


class Extension:
    """One registered extension: which events it wants, and where it is in the current phase."""

    __slots__ = ("id", "name", "events", "_polled", "_exited", "_pending")

    def __init__(self, name: str, events: frozenset[str]) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.events = events
        self._polled = False  # asking for its next event: done with the one before
        self._exited = False  # posted exit/error
        self._pending: deque[Any] = deque()  # invocations whose INVOKE event it has not had

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

    def queue(self, invocation: Any) -> None:
        """An invocation starts: its INVOKE event waits for this extension."""
        self._pending.append(invocation)
        self._polled = False

    def take_event(self) -> Any | None:
        """The invocation whose INVOKE event it gets now, if one waits; from then on it is busy."""
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

    def __init__(self, function_name: str, function_version: str, handler: str) -> None:
        self._metadata = {"functionName": function_name, "functionVersion": function_version, "handler": handler}
        self.by_id: dict[str, Extension] = {}
        self._open = True  # registration closes when init is over

    def __bool__(self) -> bool:
        return bool(self.by_id)

    def close_registration(self) -> None:
        self._open = False

    def register(self, name: str | None, body: bytes) -> Reply:
        """POST /extension/register: the 200 answer, carrying the new extension's identifier, or
        the error RIE gives."""
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
        for event in events:
            if event == "SHUTDOWN":
                return api_error(403, "Extension.InvalidEventType", "SHUTDOWN: ShutdownEventNotSupportedForInternalExtension")
            if event not in EVENT_TYPES:
                return api_error(403, "Extension.InvalidEventType", f"{event}: InvalidEventType")
        if any(ext.name == name for ext in self.by_id.values()):
            return api_error(403, "Extension.InvalidExtensionState", "Extension with this name already registered")
        if len(self.by_id) >= MAX_EXTENSIONS:
            return api_error(403, "Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached")
        extension = Extension(name, frozenset(events))
        self.by_id[extension.id] = extension
        body = (json.dumps(self._metadata, separators=(",", ":")) + "\n").encode()
        return Reply(200, body, wire.JSON, ((IDENTIFIER_HEADER, extension.id),))

    def identify(self, identifier: str | None) -> Extension | Reply:
        """The extension a request's Lambda-Extension-Identifier names, or RIE's error for it."""
        if not identifier:
            return api_error(403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header")
        try:
            uuid.UUID(identifier)
        except ValueError:
            return api_error(403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier")
        extension = self.by_id.get(identifier)
        if extension is None:
            return api_error(403, "Extension.UnknownExtensionIdentifier", f"Unknown extension {identifier}")
        return extension

    def all_done(self, subscribed_to: str | None = None) -> bool:
        """Whether every (live, and if given, subscribed) extension is done with its last event."""
        return all(ext.done() for ext in self.by_id.values() if subscribed_to is None or subscribed_to in ext.events)

    def invoke(self, invocation: Any) -> bool:
        """An invocation starts: INVOKE-subscribed extensions get its event. Whether any will."""
        waiting = [ext for ext in self.by_id.values() if ext.wants("INVOKE")]
        for ext in waiting:
            ext.queue(invocation)
        return bool(waiting)


def invoke_event(invocation: Any) -> Reply:
    """An extension's event/next answered with an invocation's INVOKE event."""
    event = {"eventType": "INVOKE", "deadlineMs": invocation.deadline_ms, "requestId": invocation.request_id,
             "invokedFunctionArn": invocation.function_arn,
             "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id}}
    return Reply(200, json.dumps(event, separators=(",", ":")).encode(), wire.JSON,
                 ((EVENT_IDENTIFIER_HEADER, str(uuid.uuid4())),))

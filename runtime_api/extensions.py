"""The Extensions API (2020-01-01) of one environment, with no I/O: registration, the events each
extension waits for, and whether every extension is done with the current phase.

Lambda's rules, as RIE serves them (reference runtime-api.md 2.7): extensions register during init
only; init is over when the runtime and every extension have asked for their next event; an
invocation is over for the environment when the runtime and every extension subscribed to INVOKE
have asked again. Extensions here are internal ones (registered from inside the runtime), which
may subscribe to INVOKE only.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .protocol import Reply, api_error

MAX_EXTENSIONS = 10
EVENT_TYPES = frozenset({"INVOKE", "SHUTDOWN"})


@dataclass(eq=False)
class Extension:
    id: str
    name: str
    events: frozenset[str]
    polled: bool = False  # asking for its next event: done with the one before
    exited: bool = False  # posted exit/error
    pending: deque = field(default_factory=deque)  # invocations whose INVOKE event it has not had


@dataclass(frozen=True, slots=True)
class Registered:
    """A successful registration: the extension and the 200 answer's body."""

    extension: Extension
    body: bytes


class Extensions:
    def __init__(self, function_name: str, function_version: str, handler: str) -> None:
        self._metadata = {"functionName": function_name, "functionVersion": function_version, "handler": handler}
        self.by_id: dict[str, Extension] = {}
        self.open = True  # registration closes when init is over

    def register(self, name: str | None, body: bytes) -> Registered | Reply:
        if not name:
            return api_error(403, "Extension.InvalidExtensionName", "Empty extension name")
        if not self.open:
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
        extension = Extension(str(uuid.uuid4()), name, frozenset(events))
        self.by_id[extension.id] = extension
        return Registered(extension, (json.dumps(self._metadata, separators=(",", ":")) + "\n").encode())

    def identify(self, header: str | None) -> Extension | Reply:
        if not header:
            return api_error(403, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header")
        try:
            uuid.UUID(header)
        except ValueError:
            return api_error(403, "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier")
        extension = self.by_id.get(header)
        if extension is None:
            return api_error(403, "Extension.UnknownExtensionIdentifier", f"Unknown extension {header}")
        return extension

    def all_polled(self, subscribed_to: str | None = None) -> bool:
        """Whether every (live, and if given, subscribed) extension is done with its last event."""
        return all(ext.polled or ext.exited for ext in self.by_id.values()
                   if subscribed_to is None or subscribed_to in ext.events)

    def invoke(self, invocation: Any) -> None:
        """An invocation starts: INVOKE-subscribed extensions get its event."""
        for ext in self.by_id.values():
            if "INVOKE" in ext.events and not ext.exited:
                ext.pending.append(invocation)
                ext.polled = False


# Go's encoding/json syntax errors, which RIE returns verbatim for a malformed register body.
END = "unexpected end of JSON input"


def go_json_error(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    i = 0

    def peek() -> str | None:
        """The next non-blank character (not consumed), or None at the end."""
        nonlocal i
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return text[i] if i < len(text) else None

    def bad(context: str) -> str:
        return f"invalid character {_go_quote(text[i])} {context}"

    def value() -> str | None:
        nonlocal i
        c = peek()
        if c is None:
            return END
        if c in "{[":
            close, element = ("}", "object key:value pair") if c == "{" else ("]", "array element")
            i += 1
            if peek() == close:
                i += 1
                return None
            while True:
                if c == "{":
                    key = peek()
                    if key is None:
                        return END
                    if key != '"':
                        return bad("looking for beginning of object key string")
                    if error := string():
                        return error
                    colon = peek()
                    if colon is None:
                        return END
                    if colon != ":":
                        return bad("after object key")
                    i += 1
                if error := value():
                    return error
                after = peek()
                if after is None:
                    return END
                i += 1
                if after == close:
                    return None
                if after != ",":
                    i -= 1
                    return bad(f"after {element}")
        if c == '"':
            return string()
        for word in ("true", "false", "null"):
            if c == word[0]:
                for expected in word[1:]:
                    i += 1
                    if i >= len(text):
                        return END
                    if text[i] != expected:
                        return bad(f"in literal {word} (expecting {_go_quote(expected)})")
                i += 1
                return None
        if c == "-" or c.isdigit():
            i += 1
            while i < len(text) and (text[i].isdigit() or text[i] in ".eE+-"):
                i += 1
            return None
        return bad("looking for beginning of value")

    def string() -> str | None:
        nonlocal i
        i += 1
        while i < len(text):
            if text[i] == "\\":
                i += 2
                continue
            if text[i] == '"':
                i += 1
                return None
            if ord(text[i]) < 0x20:
                return bad("in string literal")
            i += 1
        return END

    error = value()
    if error is None and peek() is not None:
        error = bad("after top-level value")
    return error or "invalid JSON"


def _go_quote(char: str) -> str:
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    if ord(char) < 0x20:
        return f"'\\x{ord(char):02x}'"
    return f"'{char}'"

"""The Runtime API route table, as RIE serves it (reference 2.1): exact, case-sensitive paths with
no trailing-slash tolerance; 404 with Go's text body for an unknown path, 405 with an empty body and
an `Allow` header for a known path with the wrong method (HEAD is not GET).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from bootstrap import wire


class Route(enum.Enum):
    PING = "ping"
    NEXT = "next"
    RESPONSE = "response"
    ERROR = "error"
    INIT_ERROR = "init_error"
    RESTORE_NEXT = "restore_next"
    RESTORE_ERROR = "restore_error"
    LOGS = "logs"
    TELEMETRY = "telemetry"
    METADATA = "metadata"


# path pattern -> (method, route). `{request_id}` matches any segment, even an empty one (RIE
# answers `invocation//response` with InvalidRequestID, so the route matched).
_TABLE: list[tuple[str, str, Route]] = [
    (wire.PING, "GET", Route.PING),
    (wire.INVOCATION_NEXT, "GET", Route.NEXT),
    (wire.INVOCATION_RESPONSE, "POST", Route.RESPONSE),
    (wire.INVOCATION_ERROR, "POST", Route.ERROR),
    (wire.INIT_ERROR, "POST", Route.INIT_ERROR),
    (wire.RESTORE_NEXT, "GET", Route.RESTORE_NEXT),
    (wire.RESTORE_ERROR, "POST", Route.RESTORE_ERROR),
    ("/2020-08-15/logs", "PUT", Route.LOGS),
    ("/2022-07-01/telemetry", "PUT", Route.TELEMETRY),
    ("/2026-01-15/metadata/execution-environment", "GET", Route.METADATA),
]
_PATTERNS = [
    (re.compile(re.escape(path).replace(re.escape("{request_id}"), "(?P<request_id>[^/]*)") + r"\Z"), method, route)
    for path, method, route in _TABLE
]
RESTORE_ROUTES = frozenset({Route.RESTORE_NEXT, Route.RESTORE_ERROR})


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    allow: str
    route: Route

    @property
    def body(self) -> bytes:
        # Go's router answers with an empty body; the metadata handler writes its own text.
        return b"Method Not Allowed\n" if self.route is Route.METADATA else b""


class NotFound(enum.Enum):
    NOT_FOUND = "NOT_FOUND"


NOT_FOUND = NotFound.NOT_FOUND
NOT_FOUND_BODY = b"404 page not found\n"
NOT_FOUND_HEADERS = [
    ("Content-Type", "text/plain; charset=utf-8"),
    ("X-Content-Type-Options", "nosniff"),
]


def match(method: str, path: str, *, restore: bool) -> Match | MethodNotAllowed | NotFound:
    """Which route a request is for. The restore routes exist only for SnapStart environments
    (RIE mounts them only with --enable-init-caching)."""
    for pattern, allowed, route in _PATTERNS:
        found = pattern.match(path)
        if found is None or (route in RESTORE_ROUTES and not restore):
            continue
        if method != allowed:
            return MethodNotAllowed(allowed, route)
        return Match(route, found.groupdict().get("request_id"))
    return NOT_FOUND

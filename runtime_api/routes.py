"""The Runtime API route table, as the real RIE serves it (tests/conformance records what it
answers): exact, case-sensitive paths with no trailing-slash tolerance; 404 with Go's text body for
an unknown path, 405 with an empty body and an `Allow` header for a known path with the wrong
method (HEAD is not GET).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from bootstrap import wire

from .replies import GO_ERROR_HEADERS


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
    CREDENTIALS = "credentials"
    EXTENSION_REGISTER = "extension_register"
    EXTENSION_NEXT = "extension_next"
    EXTENSION_INIT_ERROR = "extension_init_error"
    EXTENSION_EXIT_ERROR = "extension_exit_error"


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
    ("/2026-01-15/metadata/execution-environment", "*", Route.METADATA),  # checks its method itself
    ("/2021-04-23/credentials", "GET", Route.CREDENTIALS),
    ("/2020-01-01/extension/register", "POST", Route.EXTENSION_REGISTER),
    ("/2020-01-01/extension/event/next", "GET", Route.EXTENSION_NEXT),
    ("/2020-01-01/extension/init/error", "POST", Route.EXTENSION_INIT_ERROR),
    ("/2020-01-01/extension/exit/error", "POST", Route.EXTENSION_EXIT_ERROR),
]
RESTORE_ROUTES = frozenset({Route.RESTORE_NEXT, Route.RESTORE_ERROR})
INIT_CACHING_ROUTES = frozenset({Route.CREDENTIALS})
# Each route's pattern, with whether it exists only with SnapStart or only under
# --enable-init-caching worked out once here (an enum member's hash is a Python call).
_PATTERNS = [
    (re.compile(re.escape(path).replace(re.escape("{request_id}"), "(?P<request_id>[^/]*)") + r"\Z"), method, route,
     route in RESTORE_ROUTES, route in INIT_CACHING_ROUTES)
    for path, method, route in _TABLE
]


@dataclass(frozen=True, slots=True)
class Match:
    route: Route
    request_id: str | None


@dataclass(frozen=True, slots=True)
class MethodNotAllowed:
    allow: str


class NotFound(enum.Enum):
    NOT_FOUND = "NOT_FOUND"


NOT_FOUND = NotFound.NOT_FOUND
# The routes without a request id, by path: most requests (next, event/next) are found here at
# once rather than by trying every pattern in turn. Only paths that no earlier pattern matches, so
# the answer is the one the scan in `match` would give.
_EXACT = {path: (allowed, Match(route, None), restore_only, caching_only)
          for i, ((path, _, _), (_, allowed, route, restore_only, caching_only)) in enumerate(zip(_TABLE, _PATTERNS))
          if "{" not in path and not any(pattern.match(path) for pattern, *_ in _PATTERNS[:i])}
NOT_FOUND_BODY = b"404 page not found\n"
NOT_FOUND_HEADERS = list(GO_ERROR_HEADERS)


def match(method: str, path: str, *, restore: bool, init_caching: bool = False) -> Match | MethodNotAllowed | NotFound:
    """Which route a request is for. The restore routes exist only for SnapStart environments, the
    credentials route only under RIE's --enable-init-caching."""
    exact = _EXACT.get(path)
    if exact is not None:
        allowed, found, restore_only, caching_only = exact
        if (restore or not restore_only) and (init_caching or not caching_only):
            if method != allowed and allowed != "*":
                return MethodNotAllowed(allowed)
            return found
    for pattern, allowed, route, restore_only, caching_only in _PATTERNS:
        found = pattern.match(path)
        if found is None or (restore_only and not restore) or (caching_only and not init_caching):
            continue
        if method != allowed and allowed != "*":
            return MethodNotAllowed(allowed)
        return Match(route, found.groupdict().get("request_id"))
    return NOT_FOUND

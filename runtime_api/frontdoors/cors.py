"""CORS as Function URLs and HTTP APIs do it from their `Cors` settings (pure): a preflight is
answered by the service itself, without the function; an actual request's response gets the
configured headers in place of any the function set ("API Gateway ignores CORS headers returned from
your backend integration"). A request whose origin is not allowed gets no CORS headers at all, so
the browser refuses it.
"""

from __future__ import annotations

from .events import HttpRequest
from .model import Cors
from .responses import HttpResponse


def allowed_origin(cors: Cors, origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin for this origin: `*` where every origin is allowed (and
    credentials are not), the origin itself where it is allowed, else None."""
    if origin is None:
        return None
    if "*" in cors.allow_origins:
        return origin if cors.allow_credentials else "*"
    # A browser sends its origin's host in lower case; a configured one may be written otherwise
    # (`!Sub http://${MyApi}...` gives the logical id as written).
    return origin if origin.lower() in (allowed.lower() for allowed in cors.allow_origins) else None


def is_preflight(request: HttpRequest) -> bool:
    return (request.method == "OPTIONS" and request.header("origin") is not None
            and request.header("access-control-request-method") is not None)


def preflight(cors: Cors, request: HttpRequest) -> HttpResponse:
    """The service's own answer to a preflight request."""
    headers: list[tuple[str, str]] = []
    origin = allowed_origin(cors, request.header("origin"))
    if origin is not None:
        headers.append(("access-control-allow-origin", origin))
        if cors.allow_methods:
            headers.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
        if cors.allow_headers:
            asked = request.header("access-control-request-headers")
            allow = asked if "*" in cors.allow_headers and asked else ",".join(cors.allow_headers)
            headers.append(("access-control-allow-headers", allow))
        if cors.allow_credentials:
            headers.append(("access-control-allow-credentials", "true"))
        if cors.max_age is not None:
            headers.append(("access-control-max-age", str(cors.max_age)))
        if origin != "*":
            headers.append(("vary", "Origin"))
    return HttpResponse(204, headers)


def add_cors(cors: Cors, request: HttpRequest, response: HttpResponse) -> None:
    """The configured CORS headers on an actual request's response, in place of the function's."""
    response.headers = [(name, value) for name, value in response.headers
                        if not name.lower().startswith("access-control-")]
    origin = allowed_origin(cors, request.header("origin"))
    if origin is None:
        return
    response.headers.append(("access-control-allow-origin", origin))
    if cors.expose_headers:
        response.headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    if cors.allow_credentials:
        response.headers.append(("access-control-allow-credentials", "true"))
    if origin != "*":
        response.headers.append(("vary", "Origin"))

"""A function's result as the HTTP response a front door sends (pure), by the rules AWS documents
for each payload format; and the answers API Gateway and Lambda give on their own account (no
route, a denial, a result they cannot read), each in one table.

Payload format 2.0 (Function URLs, HTTP APIs): a JSON object with a `statusCode` is a response to
read (`statusCode`, `headers`, `body`, `cookies`, `isBase64Encoded`); any other JSON document is the
body itself, sent as it came with status 200 and `content-type: application/json`.

Payload format 1.0 (REST APIs, HTTP APIs that ask for it): a JSON object with `statusCode`,
`headers`, `multiValueHeaders` (merged with `headers`, a pair given in both sent once), `body` and
`isBase64Encoded`; a REST API refuses any other key, an HTTP API ignores them and needs `statusCode`.
A REST API decodes a base64 body only when the caller accepts a binary media type of the API.

A result that breaks these rules is `Malformed`: the caller gets the service's 502 (500 from an HTTP
API), and the reason goes to the log.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from dataclasses import dataclass, field
from typing import Any

from .events import matches_media_type


class Malformed(Exception):
    """The function's result is not a response this front door can send; the message says why."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)


JSON_TYPE = "application/json"


def _status(document: dict, required: bool) -> int:
    status = document.get("statusCode")
    if status is None and not required:
        return 200
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise Malformed(f"statusCode must be a whole number from 100 to 599, not {status!r}")
    return status


def _text(value: Any, what: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise Malformed(f"{what} must be a string, not {type(value).__name__}")


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise Malformed(f"headers must be an object, not {type(value).__name__}")
    return [(str(name), _text(item, f"header {name}")) for name, item in value.items()]


def _body(document: dict, decode: bool) -> bytes:
    body = document.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise Malformed(f"body must be a string, not {type(body).__name__}")
    if not decode:
        return body.encode()
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed("isBase64Encoded is true but the body is not base64") from None


def _flag(document: dict, key: str) -> bool:
    value = document.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Malformed(f"{key} must be true or false, not {value!r}")
    return value


def _decode(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise Malformed("the result is not JSON") from None


def v2_response(payload: bytes) -> HttpResponse:
    """The response of a Function URL or an HTTP API route (payload 2.0) to a function's result."""
    document = _decode(payload)
    if not isinstance(document, dict) or "statusCode" not in document:
        return HttpResponse(200, [("content-type", JSON_TYPE)], payload)
    status = _status(document, required=True)
    headers = _headers(document.get("headers"))
    cookies = document.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
        raise Malformed("cookies must be a list of strings")
    headers += [("set-cookie", cookie) for cookie in cookies]
    return HttpResponse(status, headers, _body(document, _flag(document, "isBase64Encoded")))


_V1_KEYS = frozenset({"statusCode", "body", "headers", "multiValueHeaders", "isBase64Encoded"})


def v1_response(payload: bytes, *, rest: bool, binary_media_types: list[str] = (),
                accept: str | None = None) -> HttpResponse:
    """The response of a REST API (`rest`) or an HTTP API route with payload 1.0 to a function's result."""
    document = _decode(payload)
    if not isinstance(document, dict):
        raise Malformed(f"the result must be a JSON object, not {type(document).__name__}")
    if rest and (extra := sorted(set(document) - _V1_KEYS)):
        raise Malformed(f"a REST API takes only {', '.join(sorted(_V1_KEYS))}; the result also has "
                        f"{', '.join(extra)}")
    status = _status(document, required=not rest)
    multi = document.get("multiValueHeaders") or {}
    if not isinstance(multi, dict) or not all(isinstance(values, list) for values in multi.values()):
        raise Malformed("multiValueHeaders must be an object of lists")
    headers = [(str(name), _text(value, f"header {name}")) for name, values in multi.items() for value in values]
    for name, value in _headers(document.get("headers")):
        if (name, value) not in headers:
            headers.append((name, value))
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", JSON_TYPE))
    encoded = _flag(document, "isBase64Encoded")
    if rest and encoded:
        content_type = next(value for name, value in headers if name.lower() == "content-type")
        wanted = [media.split(";")[0].strip().lower() for media in (accept or "").split(",") if media.strip()]
        encoded = any(matches_media_type(media, list(binary_media_types)) for media in wanted) \
            and matches_media_type(content_type.split(";")[0].strip().lower(), list(binary_media_types))
    return HttpResponse(status, headers, _body(document, encoded))


# -- the services' own answers ------------------------------------------------------------------

class Service(enum.Enum):
    """Which AWS service answers: its own refusals differ."""

    FUNCTION_URL = "Function URL"
    HTTP_API = "HTTP API"
    REST_API = "REST API"


class Refusal(enum.Enum):
    NO_ROUTE = "no route"
    WRONG_METHOD = "a route with this path, for another method"
    TOO_LARGE = "the request is over the size limit"
    UNAUTHORIZED = "no identity, or one the authorizer refused"
    FORBIDDEN = "the authorizer denied it"
    SIGNATURE = "AWS_IAM: no SigV4 signature, or one that is not well formed"
    AUTHORIZER_FAILED = "the authorizer failed, or answered what cannot be read"
    API_KEY = "no API key, or not one of the API's"
    FUNCTION_ERROR = "the function failed"
    MALFORMED = "the function's result is not a response"
    THROTTLED = "every environment the function may have is busy"
    REJECTED = "Lambda refused the invocation"


def _json(message: str | None) -> bytes:
    return json.dumps({"message": message}).encode()


# What each service answers, by AWS's documentation where it says (REST: its default gateway
# responses; Lambda's "Handling Lambda errors with an API Gateway API": invocation refused 500,
# function error or wrong format 502; HTTP APIs: {"message":"Internal Server Error"}).
_REST = {
    Refusal.NO_ROUTE: (403, {"message": "Missing Authentication Token"}),
    Refusal.WRONG_METHOD: (403, {"message": "Missing Authentication Token"}),
    Refusal.TOO_LARGE: (413, {"message": "Request Too Long"}),
    Refusal.UNAUTHORIZED: (401, {"message": "Unauthorized"}),
    Refusal.FORBIDDEN: (403, {"Message": "User is not authorized to access this resource with an explicit deny"}),
    Refusal.SIGNATURE: (403, {"message": "Missing Authentication Token"}),
    Refusal.AUTHORIZER_FAILED: (500, {"message": None}),
    Refusal.API_KEY: (403, {"message": "Forbidden"}),
    Refusal.FUNCTION_ERROR: (502, {"message": "Internal server error"}),
    Refusal.MALFORMED: (502, {"message": "Internal server error"}),
    Refusal.THROTTLED: (500, {"message": "Internal server error"}),
    Refusal.REJECTED: (500, {"message": "Internal server error"}),
}
_HTTP = {
    Refusal.NO_ROUTE: (404, {"message": "Not Found"}),
    Refusal.WRONG_METHOD: (404, {"message": "Not Found"}),
    Refusal.TOO_LARGE: (413, {"message": "Request Entity Too Large"}),
    Refusal.UNAUTHORIZED: (401, {"message": "Unauthorized"}),
    Refusal.FORBIDDEN: (403, {"message": "Forbidden"}),
    Refusal.SIGNATURE: (403, {"message": "Forbidden"}),
    Refusal.AUTHORIZER_FAILED: (500, {"message": "Internal Server Error"}),
    Refusal.API_KEY: (403, {"message": "Forbidden"}),
    Refusal.FUNCTION_ERROR: (500, {"message": "Internal Server Error"}),
    Refusal.MALFORMED: (500, {"message": "Internal Server Error"}),
    Refusal.THROTTLED: (500, {"message": "Internal Server Error"}),
    Refusal.REJECTED: (500, {"message": "Internal Server Error"}),
}
_URL = {
    Refusal.NO_ROUTE: (404, {"Message": None}),
    Refusal.WRONG_METHOD: (404, {"Message": None}),
    Refusal.TOO_LARGE: (413, {"Message": "Request must be smaller than 6291456 bytes for the InvokeFunction operation"}),
    Refusal.UNAUTHORIZED: (403, {"Message": "Forbidden"}),
    Refusal.FORBIDDEN: (403, {"Message": "Forbidden"}),
    Refusal.SIGNATURE: (403, {"Message": "Forbidden"}),
    Refusal.AUTHORIZER_FAILED: (403, {"Message": "Forbidden"}),
    Refusal.API_KEY: (403, {"Message": "Forbidden"}),
    Refusal.FUNCTION_ERROR: (502, {"Message": "Internal Server Error"}),
    Refusal.MALFORMED: (502, {"Message": "Internal Server Error"}),
    Refusal.THROTTLED: (429, {"Message": "Rate Exceeded."}),
    Refusal.REJECTED: (500, {"Message": "Internal Server Error"}),
}
_ANSWERS = {Service.REST_API: _REST, Service.HTTP_API: _HTTP, Service.FUNCTION_URL: _URL}


def refusal(service: Service, why: Refusal) -> HttpResponse:
    status, body = _ANSWERS[service][why]
    headers = [("Content-Type", JSON_TYPE)]
    if service is Service.REST_API:
        headers.append(("x-amzn-ErrorType", {401: "UnauthorizedException", 403: "ForbiddenException",
                                             413: "RequestTooLongException"}.get(status, "InternalServerErrorException")
                        if why not in (Refusal.NO_ROUTE, Refusal.WRONG_METHOD, Refusal.SIGNATURE)
                        else "MissingAuthenticationTokenException"))
    return HttpResponse(status, headers, json.dumps(body, separators=(",", ":")).encode())


# -- a streamed Function URL response -------------------------------------------------------------

SEPARATOR = b"\x00" * 8


class PreludeReader:
    """The head of a streamed HTTP integration response (`application/vnd.awslambda.http-integration-
    response`): a JSON prelude (statusCode, headers, cookies), eight NUL bytes, then the body. Feed
    it chunks until it has the prelude."""

    LIMIT = 64 * 1024

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> tuple[HttpResponse | None, bytes]:
        """(the response head once the prelude is complete, the body bytes after it)."""
        self._buffer += chunk
        end = self._buffer.find(SEPARATOR)
        if end < 0:
            if len(self._buffer) > self.LIMIT:
                raise Malformed("no end of the HTTP integration prelude in its first 64 KB")
            return None, b""
        prelude = _decode(self._buffer[:end])
        if not isinstance(prelude, dict):
            raise Malformed("the HTTP integration prelude must be a JSON object")
        status = _status(prelude, required=False)
        headers = _headers(prelude.get("headers"))
        cookies = prelude.get("cookies") or []
        if not isinstance(cookies, list):
            raise Malformed("cookies must be a list of strings")
        headers += [("set-cookie", _text(cookie, "a cookie")) for cookie in cookies]
        return HttpResponse(status, headers), self._buffer[end + len(SEPARATOR):]

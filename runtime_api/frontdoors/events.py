"""An HTTP request as the event a function receives (pure): payload format 2.0 (Function URLs, HTTP
APIs) and 1.0 (REST APIs, HTTP APIs that ask for it), field by field as AWS documents them in
"Lambda function URLs: Invoking", "Working with AWS Lambda proxy integrations for HTTP APIs" and
"Set up Lambda proxy integrations in API Gateway".

What differs between the two, as AWS documents it:
* 2.0 lower-cases header names and joins repeated headers and query parameters with commas; it
  moves the Cookie header to `cookies`; a field with nothing to say is left out.
* 1.0 gives each header and query parameter its last value, and every value in `multiValueHeaders`
  and `multiValueQueryStringParameters`; a REST API keeps header names as the client wrote them
  (an HTTP API lower-cases them); a field with nothing to say is null.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as a front door received it."""

    method: str
    path: str  # as received, before the query
    query: str  # the raw query string, without its '?'
    headers: list[tuple[str, str]]  # names as the client wrote them, in order
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"
    time: float = field(default_factory=time.time)  # epoch seconds
    request_id: str = ""

    def header(self, name: str) -> str | None:
        """The last value of a header (any case)."""
        name = name.lower()
        found = None
        for key, value in self.headers:
            if key.lower() == name:
                found = value
        return found

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters."""
        return (self.header("content-type") or "").split(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Place:
    """Where the request arrived and what it reached: the API (or Function URL) and its route."""

    api_id: str
    domain_name: str
    account_id: str = "123456789012"
    stage: str = "$default"
    route_key: str = "$default"  # 2.0
    resource: str = "/"  # 1.0: the route's path template
    resource_id: str | None = None  # REST
    operation_name: str | None = None  # REST
    path: str = "/"  # the path within the stage
    path_parameters: dict[str, str] = field(default_factory=dict)
    stage_variables: dict[str, str] = field(default_factory=dict)
    authorizer: dict[str, Any] | None = None  # requestContext.authorizer
    identity: dict[str, Any] = field(default_factory=dict)  # 1.0: what requestContext.identity adds
    api_key: str | None = None  # REST: the caller's x-api-key


def request_time(epoch: float) -> str:
    """`12/Mar/2020:19:03:58 +0000`, the time format of requestContext."""
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch))


def query_pairs(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


# Media types whose bodies reach the function as text; any other body is base64 (Function URLs and
# HTTP APIs: "If the content type of the request is binary, the body is base64-encoded").
_TEXT_TYPES = ("application/json", "application/javascript", "application/xml", "application/ecmascript")


def is_text(content_type: str) -> bool:
    return (content_type.startswith("text/") or content_type in _TEXT_TYPES
            or content_type.endswith("+json") or content_type.endswith("+xml"))


def matches_media_type(content_type: str, patterns: list[str]) -> bool:
    """Does a media type match one of a REST API's binary media types (`image/*`, `*/*`)?"""
    for pattern in patterns:
        pattern = pattern.strip().lower()
        kind, _, subtype = pattern.partition("/")
        got_kind, _, got_subtype = content_type.partition("/")
        if pattern == "*/*" or (kind == got_kind and subtype in ("*", got_subtype)):
            return True
    return False


def body_field(body: bytes, binary: bool) -> tuple[str | None, bool]:
    """(body, isBase64Encoded): text as it is, a binary body (or one that is not UTF-8) in base64."""
    if not body:
        return None, False
    if not binary:
        try:
            return body.decode(), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), True


def v2_event(request: HttpRequest, place: Place, *, function_url: bool = False) -> dict[str, Any]:
    """The payload format 2.0 event of a Function URL (`function_url`) or an HTTP API route."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        name = name.lower()
        if name == "cookie":
            cookies += [cookie.strip() for cookie in value.split(";") if cookie.strip()]
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": place.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if request.query:
        parameters: dict[str, str] = {}
        for name, value in query_pairs(request.query):
            parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
        event["queryStringParameters"] = parameters
    context: dict[str, Any] = {
        "accountId": place.account_id,
        "apiId": place.api_id,
    }
    if function_url:
        context["authentication"] = None
    if place.authorizer is not None or function_url:
        context["authorizer"] = place.authorizer
    context.update({
        "domainName": place.domain_name,
        "domainPrefix": place.domain_name.split(".")[0],
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": request.header("user-agent") or "",
        },
        "requestId": request.request_id,
        "routeKey": place.route_key,
        "stage": place.stage,
        "time": request_time(request.time),
        "timeEpoch": int(request.time * 1000),
    })
    event["requestContext"] = context
    body, encoded = body_field(request.body, not is_text(request.content_type))
    if body is not None:
        event["body"] = body
    if place.path_parameters:
        event["pathParameters"] = dict(place.path_parameters)
    elif function_url:
        event["pathParameters"] = None
    event["isBase64Encoded"] = encoded
    if place.stage_variables:
        event["stageVariables"] = dict(place.stage_variables)
    elif function_url:
        event["stageVariables"] = None
    return event


_IDENTITY = ("accessKey", "accountId", "caller", "cognitoAuthenticationProvider", "cognitoAuthenticationType",
             "cognitoIdentityId", "cognitoIdentityPoolId", "principalOrgId", "sourceIp", "user", "userAgent",
             "userArn")


def v1_event(request: HttpRequest, place: Place, *, rest: bool, binary_media_types: list[str] = ()) -> dict[str, Any]:
    """The payload format 1.0 event of a REST API (`rest`) or an HTTP API route that asks for 1.0."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in request.headers:
        name = name if rest else name.lower()
        headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    parameters: dict[str, str] = {}
    multi_parameters: dict[str, list[str]] = {}
    for name, value in query_pairs(request.query):
        parameters[name] = value
        multi_parameters.setdefault(name, []).append(value)
    identity: dict[str, Any] = dict.fromkeys(_IDENTITY)
    identity.update(sourceIp=request.source_ip, userAgent=request.header("user-agent"))
    if rest:
        identity.update(apiKey=place.api_key, apiKeyId=None)
    identity.update(place.identity)
    stage_prefix = "" if place.stage == "$default" else f"/{place.stage}"
    context: dict[str, Any] = {
        "accountId": place.account_id,
        "apiId": place.api_id,
    }
    if place.authorizer is not None:
        context["authorizer"] = place.authorizer
    context.update({
        "domainName": place.domain_name,
        "domainPrefix": place.domain_name.split(".")[0],
        "extendedRequestId": request.request_id,
        "httpMethod": request.method,
        "identity": identity,
        "path": stage_prefix + place.path,
        "protocol": request.protocol,
        "requestId": request.request_id,
        "requestTime": request_time(request.time),
        "requestTimeEpoch": int(request.time * 1000),
        "resourceId": place.resource_id,
        "resourcePath": place.resource,
        "stage": place.stage,
    })
    if rest and place.operation_name is not None:
        context["operationName"] = place.operation_name
    binary = (matches_media_type(request.content_type, list(binary_media_types)) if rest
              else not is_text(request.content_type))
    body, encoded = body_field(request.body, binary)
    event: dict[str, Any] = {} if rest else {"version": "1.0"}
    event.update({
        "resource": place.resource,
        "path": place.path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": parameters or None,
        "multiValueQueryStringParameters": multi_parameters or None,
        "requestContext": context,
        "pathParameters": dict(place.path_parameters) or None,
        "stageVariables": dict(place.stage_variables) or None,
        "body": body,
        "isBase64Encoded": encoded,
    })
    return event

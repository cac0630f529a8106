"""The front doors of functions, described once: a Function URL, an API Gateway HTTP API, a REST API.

A template (runtime_api/template/apis.py), the TOML config file and an embedding program all give
these Structs; the rest of this package serves them. Names follow the services' own: `auth_type`,
`invoke_mode` and `cors` are a Function URL's `AuthType`, `InvokeMode` and `Cors`; a route is
`METHOD /path` with API Gateway's path templates (`/items/{id}`, greedy `/{proxy+}`, `$default`).
"""

from __future__ import annotations

import hashlib
import re
import string
from typing import Literal

import msgspec

from .router import DEFAULT, compile_path

_ID_ALPHABET = string.ascii_lowercase + string.digits


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def local_id(name: str, seed: str, length: int) -> str:
    """A front door's id, the first label of its host name: its name in lower case where that is a
    host name label (so an API's id is what `!Ref` of it gives, and its URL can be written before
    it runs), else one made up from it in AWS's format."""
    lower = name.lower()
    return lower if _LABEL.fullmatch(lower) else made_up_id(seed, length)


def made_up_id(seed: str, length: int) -> str:
    """A stable id in the format AWS gives (lower-case letters and digits), from `seed`: the same
    API or Function URL has the same host name at every start."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    out = []
    for _ in range(length):
        number, digit = divmod(number, len(_ID_ALPHABET))
        out.append(_ID_ALPHABET[digit])
    return "".join(out)


class Cors(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A Function URL's `Cors` and an HTTP API's `CorsConfiguration` (the same six settings)."""

    allow_origins: list[str] = msgspec.field(default_factory=list)
    allow_methods: list[str] = msgspec.field(default_factory=list)
    allow_headers: list[str] = msgspec.field(default_factory=list)
    expose_headers: list[str] = msgspec.field(default_factory=list)
    allow_credentials: bool = False
    max_age: int | None = None


class FunctionUrl(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A function's URL (`FunctionUrlConfig`, `AWS::Lambda::Url`, `url = {...}` in the config file)."""

    auth_type: Literal["NONE", "AWS_IAM"] = "NONE"
    invoke_mode: Literal["BUFFERED", "RESPONSE_STREAM"] = "BUFFERED"
    cors: Cors | None = None
    url_id: str | None = None  # None: the function's name in lower case (model.local_id)
    port: int | None = None  # a listener of its own, besides its host name on the front-door port


class LambdaAuthorizer(msgspec.Struct, tag_field="kind", tag="lambda", kw_only=True, forbid_unknown_fields=True):
    """A Lambda authorizer: REST's TOKEN or REQUEST, an HTTP API's REQUEST (payload 1.0 or 2.0, IAM
    policy or simple responses). Caching is off here: every request asks the function."""

    name: str
    function: str
    type: Literal["TOKEN", "REQUEST"] = "REQUEST"
    # `method.request.header.Authorization` (REST) or `$request.header.Authorization` (HTTP API); also
    # querystring, stageVariables and context sources.
    identity_sources: list[str] = msgspec.field(default_factory=list)
    validation_expression: str | None = None  # REST TOKEN: the token must match this expression
    payload_format: Literal["1.0", "2.0"] = "1.0"
    simple_responses: bool = False  # HTTP API, payload 2.0: {"isAuthorized": ..., "context": ...}


class JwtAuthorizer(msgspec.Struct, tag_field="kind", tag="jwt", kw_only=True, forbid_unknown_fields=True):
    """An HTTP API's JWT authorizer. The token's claims are read and checked (issuer, audience, expiry,
    scopes); its signature is checked only against a local JWKS file (`jwks`)."""

    name: str
    identity_sources: list[str] = msgspec.field(default_factory=lambda: ["$request.header.Authorization"])
    issuer: str | None = None
    audience: list[str] = msgspec.field(default_factory=list)
    jwks: str | None = None  # a JSON Web Key Set file


Authorizer = LambdaAuthorizer | JwtAuthorizer


class MockResponse(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A REST API's MOCK integration (SAM's CORS preflight methods are these): its status and headers."""

    status: int = 200
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class Route(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`METHOD path` (method ANY for every method; path `$default` for an HTTP API's catch-all) and
    what it reaches: a function, or (REST) a mock response."""

    method: str
    path: str
    function: str | None = None
    payload_format: Literal["1.0", "2.0"] = "2.0"  # REST APIs always send 1.0
    authorizer: str | None = None  # an authorizer's name, or "AWS_IAM"
    authorization_scopes: list[str] = msgspec.field(default_factory=list)  # JWT: one of them must be granted
    api_key_required: bool = False  # REST
    mock: MockResponse | None = None
    operation_name: str | None = None  # REST: requestContext.operationName

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        if self.method not in ("ANY", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
            raise ValueError(f"route {self.method} {self.path}: {self.method} is not an HTTP method API Gateway routes")
        if self.path != DEFAULT:
            compile_path(self.path)  # ValueError for a template API Gateway refuses


class Api(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An API Gateway API: `kind` REST (a RestApi, payload 1.0) or HTTP (an HTTP API)."""

    name: str
    kind: Literal["REST", "HTTP"] = "HTTP"
    routes: list[Route] = msgspec.field(default_factory=list)
    api_id: str | None = None  # None: the name in lower case (a template's logical id, as `!Ref` gives it)
    stage: str = "$default"  # REST: the stage is the path's first segment; HTTP: unless $default
    stage_variables: dict[str, str] = msgspec.field(default_factory=dict)
    authorizers: list[Authorizer] = msgspec.field(default_factory=list)
    cors: Cors | None = None  # HTTP APIs (a REST API's CORS is its OPTIONS methods)
    binary_media_types: list[str] = msgspec.field(default_factory=list)  # REST
    api_keys: list[str] = msgspec.field(default_factory=list)  # REST: the values a key must have (any if none)
    port: int | None = None  # a listener of its own, besides its host name on the front-door port
    source: str | None = None  # where it was declared ("template.yaml:12"), for messages

    def __post_init__(self) -> None:
        for route in self.routes:
            if route.function is None and route.mock is None:
                raise ValueError(f"API {self.name}: route {route.method} {route.path} reaches no function")

    @property
    def id(self) -> str:
        return self.api_id or local_id(self.name, f"api:{self.name}", 10)

    def authorizer(self, name: str) -> Authorizer | None:
        return next((found for found in self.authorizers if found.name == name), None)


def with_jwks(apis: list[Api], jwks: dict[str, str]) -> list[Api]:
    """The APIs with the local JWKS file given for each JWT authorizer named in `jwks` (a template
    cannot name one: its issuer's keys are on the internet)."""
    if not jwks:
        return apis
    return [msgspec.structs.replace(api, authorizers=[
        msgspec.structs.replace(authorizer, jwks=jwks[authorizer.name])
        if isinstance(authorizer, JwtAuthorizer) and authorizer.name in jwks else authorizer
        for authorizer in api.authorizers]) for api in apis]


def url_id(function_name: str, url: FunctionUrl) -> str:
    return url.url_id or local_id(function_name, f"url:{function_name}", 32)

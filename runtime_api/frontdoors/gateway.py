"""The front doors' trio shell: listeners for Function URLs and API Gateway APIs, which read a
request, let the pure modules of this package decide (directory, router, CORS, authorizers, events,
responses), invoke through the Server exactly as the Invoke API does (so concurrency limits,
throttles, timeouts and streaming behave the same), and write the answer.

One listener, the front-door port, serves every door by its host name and the APIs on its plain
address; a door with a `port` of its own gets a listener there too. The doors served change with
`update` (a reload): a request is served by the doors as they were when it arrived.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from bootstrap import wire

from .. import http
from ..invocation import new_request_id, new_trace_id
from ..invoke_api import REQUEST_LIMIT, ServiceError, is_streaming
from . import authorizers, cors
from .directory import ApiDoor, Directory, Found, UrlDoor
from .events import HttpRequest, Place, v1_event, v2_event
from .model import JwtAuthorizer, LambdaAuthorizer, Route, made_up_id
from .responses import HttpResponse, Malformed, PreludeReader, Refusal, Service, refusal, v1_response, v2_response
from .router import DEFAULT, NO_ROUTE, Matched

if TYPE_CHECKING:
    from ..config import FunctionConfig
    from .model import Api
    from ..server import Server

log = logging.getLogger("lambdalet")


class Refused(Exception):
    """The service answers on its own account (responses.refusal); `reason` goes to the log."""

    def __init__(self, service: Service, why: Refusal, reason: str = "") -> None:
        super().__init__(reason)
        self.service, self.why, self.reason = service, why, reason


class Gateway:
    """The front doors of a Server's functions."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.directory = Directory([], [])
        self.port: int | None = None  # the front-door port, once listening
        self._own: dict[int, int] = {}  # a door's own port as configured -> as bound

    async def update(self, nursery: trio.Nursery, functions: list[FunctionConfig], apis: list[Api]) -> None:
        """Serve these doors from now on; start the listeners they need that are not running yet."""
        self.directory = Directory(functions, apis)
        if self.directory.empty:
            return
        host = self.server.config.host
        if self.port is None:
            self.port = await self._listen(nursery, host, self.server.config.front_door_port, None)
        for port in self.directory.by_port:
            if port not in self._own:
                self._own[port] = await self._listen(nursery, host, port, port)

    async def _listen(self, nursery: trio.Nursery, host: str, port: int, own: int | None) -> int:
        listeners = await trio.open_tcp_listeners(port, host=host)
        nursery.start_soon(trio.serve_listeners, partial(http.serve_connection, handler=partial(self._handle, own=own)),
                           listeners)
        return listeners[0].socket.getsockname()[1]

    @property
    def endpoint(self) -> str | None:
        """The front-door port's plain address, once listening."""
        return f"http://{self.server.config.host}:{self.port}" if self.port is not None else None

    # -- what is served, for people ------------------------------------------------------------

    def url_of(self, door: UrlDoor | ApiDoor) -> str:
        own = door.url.port if isinstance(door, UrlDoor) else door.api.port
        base = f"http://{door.host}:{self.port}"
        stage = f"/{door.api.stage}" if isinstance(door, ApiDoor) and door.staged else ""
        return base + stage + (f" (and http://{self.server.config.host}:{self._own[own]}{stage})" if own else "")

    def table(self) -> list[str]:
        """Every Function URL and route, and the function each reaches (as `sam local start-api` lists them)."""
        if self.directory.empty:
            return []
        lines = [f"lambdalet: front doors on {self.endpoint} (APIs without their stage on the plain address; every door at "
                 "its host name, which resolves to this machine)"]
        for door in self.directory.urls:
            lines.append(f"  Function URL {self.url_of(door)}/ -> {door.function.name} ({door.url.auth_type}, "
                         f"{door.url.invoke_mode})")
        for door in self.directory.apis:
            api = door.api
            lines.append(f"  {api.kind} API {api.name}: {self.url_of(door)}")
            for route in api.routes:
                target = route.function or f"mock {route.mock.status if route.mock else ''}".strip()
                auth = f" [{route.authorizer}]" if route.authorizer else ""
                key = " [API key]" if route.api_key_required else ""
                where = route.path if route.path == DEFAULT else f"{route.method:7} {route.path}"
                lines.append(f"    {where:40} -> {target}{auth}{key}")
        return lines

    # -- serving -------------------------------------------------------------------------------

    async def _handle(self, conn: http.Connection, request: http.Request, *, own: int | None) -> None:
        directory = self.directory
        door = directory.by_port.get(own) if own is not None else directory.by_host(request.header(b"host"))
        body, too_large = await conn.read_body(REQUEST_LIMIT)
        try:
            if isinstance(door, UrlDoor):
                response = await self._function_url(conn, door, request, body, too_large)
            else:
                found = (directory.route(door, request.method, request.path, own_address=True) if door is not None
                         else directory.route_any(request.method, request.path))
                if found is None:
                    response = refusal(Service.HTTP_API, Refusal.NO_ROUTE)
                else:
                    response = await self._api(conn, found, request, body, too_large)
        except Refused as exc:
            if exc.reason:
                log.warning("lambdalet: %s %s %s: %s", exc.service.value, request.method, request.path, exc.reason)
            response = refusal(exc.service, exc.why)
        if response is not None:
            await conn.respond(response.status, response.body, response.headers)

    def _http_request(self, request: http.Request, body: bytes, *, original_case: bool) -> HttpRequest:
        headers = request.original_headers() if original_case else request.headers
        return HttpRequest(
            method=request.method, path=request.path, query=request.query,
            headers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers],
            body=body, source_ip="127.0.0.1", protocol=f"HTTP/{request.http_version.decode()}",
            request_id=new_request_id())

    async def _invoke(self, service: Service, function: str, event: dict[str, Any], trace_id: str):
        """Invoke as the Invoke API does; a refusal as the front door answers it."""
        payload = msgspec.json.encode(event)
        if len(payload) > REQUEST_LIMIT:
            raise Refused(service, Refusal.TOO_LARGE if service is Service.FUNCTION_URL else Refusal.REJECTED,
                          f"the event is {len(payload)} bytes, over Lambda's {REQUEST_LIMIT}")
        try:
            return await self.server.call(function, payload, trace_id=trace_id)
        except ServiceError as exc:
            why = Refusal.THROTTLED if exc.status == 429 else Refusal.REJECTED
            raise Refused(service, why, f"Lambda refused the invocation of {function}: {exc.status} {exc.error_type}: "
                          f"{exc.message}") from None

    async def _result(self, service: Service, function: str, invocation, outcome, env) -> bytes:
        """The function's whole result (a streamed one collected); Refused when it failed."""
        body = outcome.body
        if is_streaming(outcome):
            body = await env.collect_stream(invocation)
            if invocation.stream_error is not None:
                raise Refused(service, Refusal.FUNCTION_ERROR, f"{function} failed: {invocation.stream_error.body()}")
        if outcome.is_error:
            raise Refused(service, Refusal.FUNCTION_ERROR, f"{function} failed: {body.decode(errors='replace')[:500]}")
        return body

    # -- Function URLs ---------------------------------------------------------------------------

    async def _function_url(self, conn: http.Connection, door: UrlDoor, request: http.Request, body: bytes,
                            too_large: bool) -> HttpResponse | None:
        url, function = door.url, door.function
        if too_large:
            raise Refused(Service.FUNCTION_URL, Refusal.TOO_LARGE, f"the request body is over {REQUEST_LIMIT} bytes")
        incoming = self._http_request(request, body, original_case=False)
        if url.cors is not None and cors.is_preflight(incoming):
            return cors.preflight(url.cors, incoming)
        authorizer = None
        if url.auth_type == "AWS_IAM":
            decision = authorizers.iam_decide(incoming, function.account_id)
            if isinstance(decision, authorizers.Refused):
                raise Refused(Service.FUNCTION_URL, decision.why, decision.reason)
            authorizer = decision.authorizer
        place = Place(api_id=door.url_id, domain_name=door.host, authorizer=authorizer,
                      account_id=function.account_id if url.auth_type == "AWS_IAM" else "anonymous")
        event = v2_event(incoming, place, function_url=True)
        trace_id = request.header(b"x-amzn-trace-id") or new_trace_id()
        invocation, outcome, env = await self._invoke(Service.FUNCTION_URL, function.name, event, trace_id)
        if url.invoke_mode == "RESPONSE_STREAM" and is_streaming(outcome):
            return await self._stream(conn, door, incoming, invocation, outcome, env)
        result = await self._result(Service.FUNCTION_URL, function.name, invocation, outcome, env)
        response = _mapped(Service.FUNCTION_URL, function.name, lambda: v2_response(result))
        if url.cors is not None:
            cors.add_cors(url.cors, incoming, response)
        return response

    async def _stream(self, conn: http.Connection, door: UrlDoor, incoming: HttpRequest, invocation, outcome,
                      env) -> HttpResponse | None:
        """A Function URL in RESPONSE_STREAM mode relays the function's stream as it comes: after the
        HTTP integration prelude (status, headers, cookies) where the function wrote one."""
        reader = PreludeReader() if outcome.content_type == wire.HTTP_INTEGRATION_RESPONSE else None
        started = False

        async def start(head: HttpResponse) -> None:
            nonlocal started
            if door.url.cors is not None:
                cors.add_cors(door.url.cors, incoming, head)
            started = True
            await conn.start_stream(head.status, head.headers)

        async def relay(chunk: bytes) -> None:
            if not started:
                if reader is None:
                    await start(HttpResponse(200, [("content-type", outcome.content_type or "application/octet-stream")]))
                else:
                    head, chunk = reader.feed(chunk)
                    if head is None:
                        return
                    await start(head)
            await conn.send_data(chunk)

        try:
            await env.relay_stream(invocation, relay)
        except Malformed as exc:
            raise Refused(Service.FUNCTION_URL, Refusal.MALFORMED,
                          f"{door.function.name}'s streamed response: {exc}") from None
        if not started:
            if invocation.stream_error is not None:
                raise Refused(Service.FUNCTION_URL, Refusal.FUNCTION_ERROR,
                              f"{door.function.name} failed: {invocation.stream_error.body()}")
            await start(HttpResponse(200, [("content-type", outcome.content_type or "application/octet-stream")]))
        elif invocation.stream_error is not None:
            log.warning("lambdalet: Function URL of %s: the stream ended with an error: %s", door.function.name,
                        invocation.stream_error.body())
        await conn.end_stream()
        return None

    # -- APIs ------------------------------------------------------------------------------------

    async def _api(self, conn: http.Connection, found: Found, request: http.Request, body: bytes,
                   too_large: bool) -> HttpResponse:
        api = found.door.api
        rest = api.kind == "REST"
        service = Service.REST_API if rest else Service.HTTP_API
        if too_large:
            raise Refused(service, Refusal.TOO_LARGE, f"the request body is over {REQUEST_LIMIT} bytes")
        incoming = self._http_request(request, body, original_case=rest)
        if api.cors is not None and cors.is_preflight(incoming):
            return cors.preflight(api.cors, incoming)
        match = found.match
        if not isinstance(match, Matched):
            raise Refused(service, Refusal.NO_ROUTE if match is NO_ROUTE else Refusal.WRONG_METHOD)
        route = match.route
        api_key = incoming.header("x-api-key")
        place = Place(
            api_id=api.id, domain_name=found.door.host, account_id=found.door.account_id, stage=api.stage,
            route_key=match.route_key, resource=route.path if route.path != DEFAULT else found.path,
            resource_id=made_up_id(f"{api.name}:{route.path}", 6) if rest else None,
            operation_name=route.operation_name, path=found.path, path_parameters=match.path_parameters,
            stage_variables=api.stage_variables, api_key=api_key if rest else None)
        v2 = not rest and route.payload_format == "2.0"
        event = (v2_event(incoming, place) if v2 else
                 v1_event(incoming, place, rest=rest, binary_media_types=api.binary_media_types))
        trace_id = request.header(b"x-amzn-trace-id") or new_trace_id()
        # API Gateway's order: the authorizer, then the API key, then the integration.
        if route.authorizer is not None:
            allowed = await self._authorize(service, found, route, incoming, event, trace_id)
            if allowed is not None:
                event["requestContext"]["authorizer"] = allowed
        if route.api_key_required and (not api_key or (api.api_keys and api_key not in api.api_keys)):
            raise Refused(service, Refusal.API_KEY, "the route requires an API key (x-api-key) and the request has "
                          + ("none" if not api_key else "one that is not the API's"))
        if route.mock is not None:
            return HttpResponse(route.mock.status, [("Content-Type", "application/json"),
                                                    *route.mock.headers.items()])
        invocation, outcome, env = await self._invoke(service, route.function, event, trace_id)
        result = await self._result(service, route.function, invocation, outcome, env)
        if v2:
            response = _mapped(service, route.function, lambda: v2_response(result))
        else:
            response = _mapped(service, route.function, lambda: v1_response(
                result, rest=rest, binary_media_types=api.binary_media_types, accept=incoming.header("accept")))
        if api.cors is not None:
            cors.add_cors(api.cors, incoming, response)
        return response

    async def _authorize(self, service: Service, found: Found, route: Route, incoming: HttpRequest,
                         event: dict[str, Any], trace_id: str) -> dict[str, Any] | None:
        """requestContext.authorizer for the integration; Refused when the request may not pass."""
        api = found.door.api
        if route.authorizer == "AWS_IAM":
            decision = authorizers.iam_decide(incoming, found.door.account_id)
            if isinstance(decision, authorizers.Refused):
                raise Refused(service, decision.why, decision.reason)
            return None
        authorizer = api.authorizer(route.authorizer)
        if authorizer is None:
            raise Refused(service, Refusal.AUTHORIZER_FAILED, f"the route's authorizer {route.authorizer} is not defined")
        identity = authorizers.identity_values(authorizer.identity_sources, incoming,
                                               stage_variables=api.stage_variables, context=event["requestContext"])
        if identity is None:
            raise Refused(service, Refusal.UNAUTHORIZED,
                          f"the identity sources of authorizer {authorizer.name} are not all in the request")
        if isinstance(authorizer, JwtAuthorizer):
            decision = authorizers.jwt_decide(authorizer, identity[0], route.authorization_scopes,
                                              v2=route.payload_format == "2.0")
        else:
            decision = await self._lambda_authorizer(service, found, authorizer, incoming.method, event, identity,
                                                     trace_id)
        if isinstance(decision, authorizers.Refused):
            raise Refused(service, decision.why, f"authorizer {authorizer.name}: {decision.reason}")
        return decision.authorizer

    async def _lambda_authorizer(self, service: Service, found: Found, authorizer: LambdaAuthorizer, method: str,
                                 event: dict[str, Any], identity: list[str], trace_id: str) -> authorizers.Decision:
        api = found.door.api
        rest = api.kind == "REST"
        arn = authorizers.execute_api_arn(found.door.region, found.door.account_id, api.id, api.stage, method,
                                          found.path)
        if rest and authorizer.type == "TOKEN":
            refused = authorizers.token_refused(authorizer, identity[0])
            if refused is not None:
                return refused
            authorizer_event = authorizers.token_event(identity[0], arn)
        else:
            authorizer_event = authorizers.request_event(authorizer, event, identity, arn, rest=rest)
        started = time.monotonic()
        invocation, outcome, env = await self._invoke(service, authorizer.function, authorizer_event, trace_id)
        try:
            answer = await self._result(service, authorizer.function, invocation, outcome, env)
        except Refused:
            return authorizers.failure(outcome.body)
        decision = authorizers.decide(authorizer, answer, arn, rest=rest)
        if isinstance(decision, authorizers.Allowed) and rest and decision.authorizer is not None:
            decision.authorizer["integrationLatency"] = int((time.monotonic() - started) * 1000)
        return decision


def _mapped(service: Service, function: str, mapping) -> HttpResponse:
    try:
        return mapping()
    except Malformed as exc:
        raise Refused(service, Refusal.MALFORMED, f"{function}'s result is not a response: {exc}") from None


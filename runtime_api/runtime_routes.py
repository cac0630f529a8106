"""The Runtime API of one execution environment: the requests its runtime (and the runtime's
internal extensions) make, answered from the environment's protocol state.

`RuntimeAPI` is the HTTP face of an `Environment` (environment.py): it accepts on the environment's
listener, turns each request into a protocol event and carries out what comes back through the
environment (`env._apply`), so both share one state by design. Route matching is in routes.py,
the rules in protocol.py.
"""

from __future__ import annotations

import errno
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

import trio

from bootstrap import wire

from . import routes
from .extensions import Extension
from .http import Connection, Request, serve_connection
from .invocation import Invocation, stream_error
from .protocol import (
    ACCEPTED,
    PARK,
    Deliver,
    ErrorPosted,
    InitErrorPosted,
    NextRequested,
    ReadBody,
    Reply,
    ResponseFinished,
    ResponseStarted,
    RestoreErrorPosted,
    RestoreNextRequested,
    api_error,
)

if TYPE_CHECKING:
    from .environment import Environment

log = logging.getLogger("lambdalet")

_EXTENSION_ROUTES = frozenset({
    routes.Route.EXTENSION_REGISTER, routes.Route.EXTENSION_NEXT,
    routes.Route.EXTENSION_INIT_ERROR, routes.Route.EXTENSION_EXIT_ERROR,
})
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# Lambda's limit for streamed responses (buffered ones have the 6 MB Runtime API limit).
STREAM_LIMIT_BYTES = 20 * 1024 * 1024
_STUB_BODIES = {
    routes.Route.LOGS: b'{"errorMessage":"Logs API is not supported","errorType":"Logs.NotSupported"}\n',
    routes.Route.TELEMETRY: b'{"errorMessage":"Telemetry API is not supported","errorType":"Telemetry.NotSupported"}\n',
}


class RuntimeAPI:
    """Serves one environment's Runtime API (and Extensions, Logs, Telemetry, metadata)."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    async def accept(self, listeners: list[trio.SocketListener]) -> None:
        """Accept the runtime's connections (as trio.serve_listeners, but leaving a listener that
        was handed over open for the environment after this one), until `_accepting` is cancelled."""
        with self.env._accepting:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener)

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("Runtime API listener %s: %s; retrying", self.env.address, exc.strerror)
                await trio.sleep(0.1)  # out of descriptors or memory: give the system a moment
                continue
            self.env._nursery.start_soon(self._serve_runtime_api, stream)

    async def _serve_runtime_api(self, stream: trio.SocketStream) -> None:
        await serve_connection(stream, self._route)

    async def _route(self, conn: Connection, request: Request) -> None:
        found = routes.match(request.method, request.path, restore=self.env.options.snapstart,
                             init_caching=self.env.options.container_credentials is not None)
        if found is routes.NOT_FOUND:
            await conn.respond(404, routes.NOT_FOUND_BODY, routes.NOT_FOUND_HEADERS)
            return
        if isinstance(found, routes.MethodNotAllowed):
            await conn.respond(405, b"", [("Allow", found.allow)])
            return
        route = found.route
        if route is routes.Route.NEXT:
            await self._next(conn)
        elif route is routes.Route.RESPONSE:
            await self._response(conn, request, found.request_id or "")
        elif route is routes.Route.ERROR:
            body, too_large = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await self._answer(conn, ErrorPosted(
                found.request_id or "", body, request.header(b"content-type"),
                request.header(b"lambda-runtime-function-error-type"), too_large,
            ))
        elif route is routes.Route.INIT_ERROR:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await self._answer(conn, InitErrorPosted(body, request.header(b"lambda-runtime-function-error-type")))
        elif route is routes.Route.RESTORE_NEXT:
            if self.env.wanted is not None:
                # A staged copy waits here until its environment is wanted, as a SnapStart
                # snapshot on Lambda is taken in restore/next and answered once restored.
                await self.env.wanted.wait()
            await self._answer(conn, RestoreNextRequested())
        elif route is routes.Route.RESTORE_ERROR:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await self._answer(conn, RestoreErrorPosted(body, request.header(b"lambda-runtime-function-error-type")))
        elif route is routes.Route.METADATA:
            await self._metadata(conn, request)
        elif route is routes.Route.CREDENTIALS:
            await self._credentials(conn, request)
        elif route in _EXTENSION_ROUTES:
            await self._extension_route(conn, request, route)
        elif route is routes.Route.PING:
            await conn.respond(200, b"pong", [("Content-Type", "text/plain; charset=utf-8")])
        else:  # the Logs and Telemetry API stubs answer 202 with an error body, as RIE does
            await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            await conn.respond(202, _STUB_BODIES[route], [("Content-Type", wire.JSON)])

    async def _metadata(self, conn: Connection, request: Request) -> None:
        """The execution-environment metadata endpoint (AWS_LAMBDA_METADATA_API), Bearer token only."""
        if request.method != "GET":
            await conn.respond(405, b"Method Not Allowed\n", routes.GO_ERROR_HEADERS)
            return
        if request.header(b"authorization") != f"Bearer {self.env.options.metadata_token}":
            await conn.respond(401, b"Unauthorized\n", routes.GO_ERROR_HEADERS)
            return
        body = b'{"AvailabilityZoneID":"%s"}' % self.env.options.availability_zone_id.encode()
        await conn.respond(200, body, [("Content-Type", wire.JSON), ("Cache-Control", "private, max-age=43200, immutable")])

    async def _extension_route(self, conn: Connection, request: Request, route: routes.Route) -> None:
        """The Extensions API: registration, the event long-poll, and the two error reports."""
        body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
        if route is routes.Route.EXTENSION_REGISTER:
            registered = self.env.extensions.register(request.header(b"lambda-extension-name"), body)
            if isinstance(registered, Reply):
                await _send_reply(conn, registered)
            else:
                await conn.respond(200, registered.body, [
                    ("Content-Type", wire.JSON), ("Lambda-Extension-Identifier", registered.extension.id)])
            return
        extension = self.env.extensions.identify(request.header(b"lambda-extension-identifier"))
        if isinstance(extension, Reply):
            await _send_reply(conn, extension)
            return
        if route is routes.Route.EXTENSION_NEXT:
            await self._extension_next(conn, extension)
            return
        if request.header(b"lambda-extension-function-error-type") is None:
            await _send_reply(conn, api_error(403, "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found"))
            return
        if route is routes.Route.EXTENSION_EXIT_ERROR:
            await _send_reply(conn, self.env._apply(self.env.proto.extension_exited(extension)))
        else:
            await _send_reply(conn, ACCEPTED)

    async def _extension_next(self, conn: Connection, extension: Extension) -> None:
        answer = self.env._apply(self.env.proto.extension_next(extension))
        while answer is PARK:
            await self.env._extension_parking.park()
            answer = self.env._apply(self.env.proto.extension_next(extension, woken=True))
        if isinstance(answer, Reply):
            await _send_reply(conn, answer)
            return
        invocation: Invocation = answer.invocation
        event = {"eventType": "INVOKE", "deadlineMs": invocation.deadline_ms, "requestId": invocation.request_id,
                 "invokedFunctionArn": invocation.function_arn,
                 "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id}}
        await conn.respond(200, json.dumps(event, separators=(",", ":")).encode(), [
            ("Content-Type", wire.JSON), ("Lambda-Extension-Event-Identifier", str(uuid.uuid4()))])

    async def _credentials(self, conn: Connection, request: Request) -> None:
        """RIE's container-credentials endpoint (--enable-init-caching): the raw token, after init."""
        if not self.env.initialised or request.header(b"authorization") != self.env.options.credentials_token:
            await conn.respond(404, b"cannot get credentials for the provided token\n", routes.GO_ERROR_HEADERS)
            return
        body = self.env.options.container_credentials or b""
        await conn.respond(200, body, [("Content-Type", "text/plain; charset=utf-8")])  # as Go sniffs it

    async def _answer(self, conn: Connection, event: Any) -> None:
        await _send_reply(conn, self.env._apply(self.env.proto.handle(event)))

    async def _next(self, conn: Connection) -> None:
        while True:
            answer = self.env._apply(self.env.proto.handle(NextRequested()))
            if answer is not PARK:
                break
            await self.env._parking.park()
        if isinstance(answer, Deliver):
            invocation: Invocation = answer.invocation
            self.env._deliver(invocation)
            await conn.respond(200, invocation.payload, invocation.next_headers())
        else:
            await _send_reply(conn, answer)

    async def _response(self, conn: Connection, request: Request, request_id: str) -> None:
        mode = request.header(b"lambda-runtime-function-response-mode")
        answer = self.env._apply(self.env.proto.handle(ResponseStarted(request_id, mode)))
        if not isinstance(answer, ReadBody):
            await _send_reply(conn, answer)
            return
        invocation: Invocation = self.env.proto.invocation
        if answer.streaming:
            too_large = await self._relay_from_runtime(conn, invocation)
            body = None
        else:
            body, too_large = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
        await self._answer(conn, ResponseFinished(request_id, body, too_large))

    async def _relay_from_runtime(self, conn: Connection, invocation: Invocation) -> bool:
        """Pass a streamed response body on to the caller as it arrives; True if it was too large."""
        assert invocation.stream_send is not None
        size = 0
        complete = False
        try:
            async with invocation.stream_send as send:
                async for chunk in conn.body_chunks():
                    size += len(chunk)
                    if size > STREAM_LIMIT_BYTES:
                        continue  # read on, relay no more
                    try:
                        await send.send(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass  # the caller went away; the runtime still gets its answer
                error_type = conn.request.trailer(b"lambda-runtime-function-error-type") if conn.request else None
                if size > STREAM_LIMIT_BYTES:
                    invocation.stream_error = stream_error(
                        "Function.ResponseSizeTooLarge",
                        f"Response payload size exceeded maximum allowed payload size ({STREAM_LIMIT_BYTES} bytes).",
                    )
                elif error_type:
                    body = conn.request.trailer(b"lambda-runtime-function-error-body") or ""
                    invocation.stream_error = (error_type, body)
                complete = True
        finally:
            if not complete and invocation.stream_error is None:
                invocation.stream_error = stream_error(
                    "Runtime.ExitError",
                    f"RequestId: {invocation.request_id} Error: Runtime exited while streaming its response",
                )
            error = invocation.stream_error
            self.env._report(invocation, status="error" if error else None, error_type=error[0] if error else None)
        return size > STREAM_LIMIT_BYTES


async def _send_reply(conn: Connection, reply: Reply) -> None:
    headers = [("Content-Type", reply.content_type)] if reply.content_type else []
    await conn.respond(reply.status, reply.body, headers)

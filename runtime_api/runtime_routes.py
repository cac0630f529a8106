"""The Runtime API of one execution environment, as HTTP: the requests its runtime and its
extensions make (the Runtime, Extensions, Telemetry and Logs APIs, the metadata endpoint).

Each handler only translates: the request becomes a protocol event
(protocol.py), the environment (environment.py) hands it to its protocol and returns the answer,
and the answer becomes the HTTP response. Which answer a request gets is decided there, never
here. Route matching is in routes.py.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING

import trio

from bootstrap import wire

from . import routes
from .http import Connection, Request, serve_connection
from .protocol import (
    CredentialsRequested,
    Deliver,
    ErrorPosted,
    ExtensionErrorPosted,
    ExtensionNextRequested,
    ExtensionRegisterRequested,
    InitErrorPosted,
    MetadataRequested,
    NextRequested,
    ReadBody,
    ResponseFinished,
    ResponseStarted,
    RestoreErrorPosted,
    RestoreNextRequested,
    TelemetrySubscribeRequested,
)
from .replies import Reply

if TYPE_CHECKING:
    from .environment import Environment

log = logging.getLogger("lambdalet")

_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class RuntimeAPI:
    """Serves one environment's Runtime API (and Extensions, Logs, Telemetry, metadata)."""

    def __init__(self, env: Environment) -> None:
        self.env = env

    async def accept(self, listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
        """Accept the runtime's connections, each served in `nursery` (as trio.serve_listeners,
        but leaving the listeners open: one handed over serves the next environment too)."""
        async with trio.open_nursery() as accepting:
            for listener in listeners:
                accepting.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                log.error("Runtime API listener %s: %s; retrying", self.env.address, exc.strerror)
                await trio.sleep(0.1)  # out of descriptors or memory: give the system a moment
                continue
            nursery.start_soon(serve_connection, stream, self._route)

    async def _route(self, conn: Connection, request: Request) -> None:
        restore, init_caching = self.env.optional_routes
        found = routes.match(request.method, request.path, restore=restore, init_caching=init_caching)
        if found is routes.NOT_FOUND:
            await conn.respond(404, routes.NOT_FOUND_BODY, routes.NOT_FOUND_HEADERS)
            return
        if isinstance(found, routes.MethodNotAllowed):
            await conn.respond(405, b"", [("Allow", found.allow)])
            return
        route, header = found.route, request.header
        if route is routes.Route.NEXT:
            answer = await self.env.runtime_request(NextRequested())
            if isinstance(answer, Deliver):
                await conn.respond(200, answer.invocation.payload, answer.invocation.next_headers())
                return
        elif route is routes.Route.RESPONSE:
            answer = await self._response(conn, request, found.request_id or "")
        elif route is routes.Route.ERROR:
            body, too_large = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(ErrorPosted(
                found.request_id or "", body, header(b"content-type"),
                header(b"lambda-runtime-function-error-type"), too_large))
        elif route is routes.Route.INIT_ERROR:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(InitErrorPosted(body, header(b"lambda-runtime-function-error-type")))
        elif route is routes.Route.RESTORE_NEXT:
            answer = await self.env.runtime_request(RestoreNextRequested())
        elif route is routes.Route.RESTORE_ERROR:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(RestoreErrorPosted(body, header(b"lambda-runtime-function-error-type")))
        elif route is routes.Route.METADATA:
            answer = await self.env.runtime_request(MetadataRequested(request.method, header(b"authorization")))
        elif route is routes.Route.CREDENTIALS:
            answer = await self.env.runtime_request(CredentialsRequested(header(b"authorization")))
        elif route is routes.Route.EXTENSION_REGISTER:
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(ExtensionRegisterRequested(
                header(b"lambda-extension-name"), body, header(b"lambda-extension-accept-feature")))
        elif route is routes.Route.EXTENSION_NEXT:
            await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(ExtensionNextRequested(header(b"lambda-extension-identifier")))
        elif route in (routes.Route.EXTENSION_INIT_ERROR, routes.Route.EXTENSION_EXIT_ERROR):
            await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(ExtensionErrorPosted(
                header(b"lambda-extension-identifier"), header(b"lambda-extension-function-error-type"),
                exiting=route is routes.Route.EXTENSION_EXIT_ERROR))
        elif route in (routes.Route.LOGS, routes.Route.TELEMETRY):
            body, _ = await conn.read_body(wire.MAX_PAYLOAD_BYTES)
            answer = await self.env.runtime_request(TelemetrySubscribeRequested(
                "Logs" if route is routes.Route.LOGS else "Telemetry", header(b"lambda-extension-identifier"), body,
                trio.current_time()))
        else:  # PING
            answer = Reply(200, b"pong", "text/plain; charset=utf-8")
        assert isinstance(answer, Reply), answer
        await conn.respond(answer.status, answer.body, answer.fields())

    async def _response(self, conn: Connection, request: Request, request_id: str) -> Reply:
        """POST /runtime/invocation/{id}/response: accepted by the protocol, then its body read
        whole (buffered) or relayed to the caller as it arrives (streamed)."""
        answer = await self.env.runtime_request(
            ResponseStarted(request_id, request.header(b"lambda-runtime-function-response-mode"),
                            request.header(b"content-type")))
        if not isinstance(answer, ReadBody):
            return answer
        if answer.streaming:
            too_large = await self.env.relay_response(request_id, conn.body_chunks(), answer.limit)
            finished = ResponseFinished(request_id, None, too_large,
                                        request.trailer(b"lambda-runtime-function-error-type"),
                                        request.trailer(b"lambda-runtime-function-error-body"))
        else:
            body, too_large = await conn.read_body(answer.limit)
            finished = ResponseFinished(request_id, body, too_large)
        return await self.env.runtime_request(finished)

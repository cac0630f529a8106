"""A small HTTP/1.1 server connection over trio and h11, shared by the Runtime API and Invoke API.

It moves bytes and nothing else (style anchor H10): requests in, responses out, bodies streamed in
both directions, `Expect: 100-continue` answered when the body is first read, trailers received and
sent, keep-alive cycles. What a request means is decided by the route handlers.
"""

from __future__ import annotations

import email.utils
import logging
from http import HTTPStatus
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import h11
import trio

log = logging.getLogger("lambdalet")

MAX_HEADER_BYTES = 1 << 20  # Go's net/http default (DefaultMaxHeaderBytes); Node's RIC sends big X-Ray headers
READ_SIZE = 1 << 16

Headers = list[tuple[bytes, bytes]]


class ClientGone(Exception):
    """The peer closed or broke the connection; there is nobody left to answer."""


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: Headers  # lower-case names, as h11 gives them
    http_version: bytes
    trailers: Headers = field(default_factory=list)

    def header(self, name: bytes) -> str | None:
        """The first value of a header (name in lower case), decoded as Latin-1 like HTTP."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def trailer(self, name: bytes) -> str | None:
        for key, value in self.trailers:
            if key == name:
                return value.decode("latin-1")
        return None


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NO_CONTROLS = bytes.maketrans(b"\r\n\0", b"   ")


def _field(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """A response header as bytes, safe to write: a name must be a token (ours always are); a value
    loses any CR, LF and NUL, which become spaces as Go's net/http does (a decoded client context
    or a caller's trace id must never split a header)."""
    raw_name = name if isinstance(name, bytes) else name.encode("ascii")
    if not raw_name or not _TOKEN.issuperset(raw_name):
        raise ValueError(f"invalid header name {raw_name!r}")
    if isinstance(value, str):
        try:
            value = value.encode("latin-1")  # what came in as a header goes out as the same bytes
        except UnicodeEncodeError:
            value = value.encode()
    if b"\r" in value or b"\n" in value or b"\0" in value:
        value = value.translate(_NO_CONTROLS)
    return raw_name, value.strip(b" \t")
_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The Date header value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


class Connection:
    """One server-side HTTP connection: h11's state plus the trio stream it drives."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.request: Request | None = None

    async def _next_event(self) -> h11.Event:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.h11.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))
            try:
                data = await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientGone from exc
            self.h11.receive_data(data)

    async def _send(self, *events: h11.Event) -> None:
        # One write for the whole batch: on loopback every send is a wake-up of the peer.
        data = b"".join(self.h11.send(event) or b"" for event in events)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.h11.send_failed()
                raise ClientGone from exc

    async def next_request(self) -> Request | None:
        """The next request's head, or None when the peer closed the connection between requests."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        try:
            event = await self._next_event()
        except ClientGone:
            return None
        if type(event) is h11.ConnectionClosed:
            return None
        assert type(event) is h11.Request, event
        target = event.target.decode("latin-1")
        path, _, query = target.partition("?")
        self.request = Request(
            event.method.decode("ascii"), path, query, list(event.headers), event.http_version
        )
        return self.request

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives; trailers end up on the request."""
        while True:
            event = await self._next_event()
            if type(event) is h11.Data:
                yield bytes(event.data)
            elif type(event) is h11.EndOfMessage:
                if self.request is not None:
                    self.request.trailers = list(event.headers)
                return
            elif type(event) is h11.ConnectionClosed:
                raise ClientGone("connection closed mid-body")

    async def read_body(self, limit: int) -> tuple[bytes, bool]:
        """The whole body, up to `limit` bytes; the rest is read and dropped. (body, exceeded)."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self.body_chunks():
            if size < limit:
                parts.append(chunk[: limit - size])
            size += len(chunk)
        return b"".join(parts), size > limit

    def _head(self, status: int, headers: Iterable[tuple[str | bytes, str | bytes]]) -> h11.Response:
        fields = [(b"Date", http_date()), *(_field(name, value) for name, value in headers)]
        # The fields are made safe by _field, so h11's per-header regex validation (the larger part
        # of its cost per response) is skipped the way h11 skips it for what it parsed itself.
        return h11.Response(status_code=status, headers=fields, reason=_REASONS.get(status, b""), _parsed=True)

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        *,
        content_length: bool = True,
    ) -> None:
        """Send a whole response. The request body, if any is left, is drained (or the connection
        is closed after the response when it cannot be reused)."""
        head = list(headers)
        if content_length:
            head.append(("Content-Length", str(len(body))))
        events: list[h11.Event] = [self._head(status, head)]
        if body and not (self.request is not None and self.request.method == "HEAD"):
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        await self._send(*events)
        await self._finish_request()

    async def start_stream(self, status: int, headers: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        """Begin a response whose body follows in pieces (chunked for HTTP/1.1)."""
        await self._send(self._head(status, headers))

    async def send_data(self, data: bytes) -> None:
        if data:
            await self._send(h11.Data(data=data))

    async def end_stream(self, trailers: Headers | None = None) -> None:
        chunked = self.h11.their_http_version == b"1.1"
        await self._send(h11.EndOfMessage(headers=trailers if (trailers and chunked) else []))
        await self._finish_request()

    async def _finish_request(self) -> None:
        # Keep the connection for the next request only if the request body was read to its end;
        # otherwise read what is left (bounded) so keep-alive survives a handler that did not.
        if self.h11.their_state is h11.SEND_BODY:
            try:
                with trio.move_on_after(5):
                    async for _ in self.body_chunks():
                        pass
            except (ClientGone, h11.RemoteProtocolError):
                pass
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is not h11.DONE:
            await self.close()

    @property
    def response_started(self) -> bool:
        return self.h11.our_state is not h11.SEND_RESPONSE

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def send_error(self, status: int, body: bytes = b"", headers=()) -> None:
        """The error answer of last resort; silent if a response was already begun."""
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            await self.respond(status, body, [*headers, ("Connection", "close")])
        except (ClientGone, h11.LocalProtocolError):
            pass


Handler = Callable[[Connection, Request], Awaitable[None]]


async def serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    """Serve requests on one connection until the peer closes it or it cannot be reused.

    A malformed request gets its status (400, 431, ...) and the connection is closed; a handler that
    fails with an ordinary exception gets a 500 if nothing was sent yet, and the connection is closed
    (style anchor T3). Cancellation and KeyboardInterrupt pass through.
    """
    conn = Connection(stream)
    try:
        while True:
            try:
                request = await conn.next_request()
            except h11.RemoteProtocolError as exc:
                await conn.send_error(exc.error_status_hint, f"{exc}\n".encode(),
                                      [("Content-Type", "text/plain; charset=utf-8")])
                return
            if request is None:
                return
            try:
                await handler(conn, request)
            except ClientGone:
                return
            except h11.RemoteProtocolError as exc:
                await conn.send_error(exc.error_status_hint)
                return
            except Exception:
                # A lambdalet bug: it stays with this connection (500, closed), never the server.
                log.exception("error while serving %s %s", request.method, request.path)
                await conn.send_error(500)
                return
            if conn.h11.our_state is h11.MUST_CLOSE or conn.h11.our_state is h11.CLOSED:
                return
            if conn.h11.our_state is not h11.DONE:
                # The handler left without answering: that is a lambdalet bug; close cleanly.
                await conn.send_error(500)
                return
    finally:
        await conn.close()

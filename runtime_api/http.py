"""A small HTTP/1.1 server connection over trio, shared by the Runtime API and Invoke API.

It moves bytes and nothing else: requests in, responses out, bodies streamed in
both directions, `Expect: 100-continue` answered when the body is first read, trailers received and
sent, keep-alive cycles. What a request means is decided by the route handlers.

A connection starts on the fast path and goes over to h11 for good at the first request the fast
path does not take (runtime_api/http_framing.py: the two framings, with no I/O). `Connection` is
the trio shell around the current framing, and holds once what both share: reading and writing,
finishing a request (draining an unread body, deciding to close), where the answer to the current
request stands, and the error answer of last resort.
"""

from __future__ import annotations

import email.utils
import enum
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import h11
import trio

from .http1 import Headers, HeaderItems
from .http_framing import END, MAX_HEADER_BYTES, NEED_DATA, TO_H11, Event, FastFraming, H11Framing, Request

__all__ = ["ClientGone", "Connection", "Headers", "MAX_HEADER_BYTES", "READ_SIZE", "Request",
           "http_date", "serve_connection"]

log = logging.getLogger("lambdalet")

READ_SIZE = 1 << 16
DRAIN_SECONDS = 5  # how long a request body a handler left unread is read and dropped


class ClientGone(Exception):
    """The peer closed or broke the connection; there is nobody left to answer."""


_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The Date header value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


class Answer(enum.Enum):
    """Where the answer to the current request stands."""
    NOT_BEGUN = "not begun"
    STREAMING = "head sent, the body going out in pieces"
    SENT = "sent whole"


NOT_BEGUN, STREAMING, SENT = Answer  # as globals: a member looked up on its class costs more per request


class Connection:
    """One server-side HTTP connection: the fast path while requests are simple, h11 after that."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.request: Request | None = None
        self._framing: FastFraming | H11Framing = FastFraming()
        self._answer = NOT_BEGUN
        self._closing = False
        # Just answered: the peer's next request cannot be there before it has read the answer
        # (but for a pipelining client), so the next read waits for the socket first rather than
        # failing with EAGAIN (a system call and an exception for each request).
        self._answered_last = False
        # A socket's descriptor, read and written directly: trio's stream wrappers cost more per
        # call than the fast path's parsing (a conflict detector, context managers, a scheduler pass).
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None

    @property
    def answered(self) -> bool:
        """The current request's response was sent whole."""
        return self._answer is SENT

    @property
    def closing(self) -> bool:
        """The connection takes no more requests (closed, or about to be)."""
        return self._closing

    async def _receive(self) -> bytes:
        """Bytes from the peer, b"" once it closed its side; ClientGone if the connection broke."""
        if self._fd is None:
            try:
                return await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientGone from exc
        if self._answered_last:
            self._answered_last = False
            await trio.lowlevel.wait_readable(self._fd)
        while True:
            try:
                return os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
            except OSError as exc:  # reset by the peer, or closed under us
                raise ClientGone from exc

    async def _send(self, data: bytes) -> None:
        """All of `data`, in one write where the socket takes it: on loopback every write wakes the peer."""
        try:
            if self._fd is None:
                await self.stream.send_all(data)
                return
            view = memoryview(data)
            while view:
                try:
                    view = view[os.write(self._fd, view):]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self._fd)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._framing.send_failed()
            self._closing = True
            raise ClientGone from exc

    async def next_request(self) -> Request | None:
        """The next request's head, or None when the peer closed the connection between requests."""
        self._answer = NOT_BEGUN
        while True:
            request = self._framing.next_request()
            if request is NEED_DATA:
                try:
                    self._framing.receive_data(await self._receive())
                except ClientGone:
                    return None
            elif request is TO_H11:
                fast = self._framing
                self._framing = H11Framing(fast.buffer, fast.closed)
            else:
                self.request = request
                return request

    async def _next_piece(self) -> bytes | Event:
        """The next piece of the request body, or END."""
        framing = self._framing
        while (piece := framing.next_body()) is NEED_DATA:
            if interim := framing.pending_continue():
                await self._send(interim)
            framing.receive_data(await self._receive())
        return piece

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives; trailers end up on the request."""
        while (piece := await self._next_piece()) is not END:
            yield piece

    async def read_body(self, limit: int) -> tuple[bytes, bool]:
        """The whole body, up to `limit` bytes; the rest is read and dropped. (body, exceeded)."""
        # Not through body_chunks: an async generator costs more per request than the rest of this.
        parts: list[bytes] = []
        size = 0
        while (piece := await self._next_piece()) is not END:
            if size < limit:
                parts.append(piece[: limit - size])
            size += len(piece)
        return b"".join(parts), size > limit

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: HeaderItems = (),
        *,
        content_length: bool = True,
    ) -> None:
        """Send a whole response, in one write. A request body left unread is drained (or the
        connection closed) so the next request can be read."""
        length = len(body) if content_length else None
        if self.request is not None and self.request.method == "HEAD":
            body = b""
        data = self._framing.response(status, headers, length, body, http_date())
        self._answer = SENT
        await self._send(data)
        await self._finish_request()

    async def start_stream(self, status: int, headers: HeaderItems = ()) -> None:
        """Begin a response whose body follows in pieces (chunked for HTTP/1.1)."""
        data = self._framing.stream_head(status, headers, http_date())
        self._answer = STREAMING
        await self._send(data)

    async def send_data(self, data: bytes) -> None:
        if data:
            await self._send(self._framing.data(data))

    async def end_stream(self, trailers: Headers | None = None) -> None:
        data = self._framing.end(trailers or ())
        self._answer = SENT
        await self._send(data)
        await self._finish_request()

    async def _finish_request(self) -> None:
        self._answered_last = True
        # Keep the connection for the next request only if the request body was read to its end;
        # read what a handler left unread (bounded) so keep-alive survives it.
        if not self._framing.reusable:
            if self._framing.body_left:
                try:
                    with trio.move_on_after(DRAIN_SECONDS):
                        while await self._next_piece() is not END:
                            pass
                except (ClientGone, h11.RemoteProtocolError):
                    pass
            if not self._framing.reusable:
                self._closing = True
        if self._closing:
            await self.close()

    async def close(self) -> None:
        self._closing = True
        self._fd = None  # once closed, the number may be another socket's
        await trio.aclose_forcefully(self.stream)

    async def send_error(self, status: int, body: bytes = b"", headers: HeaderItems = ()) -> None:
        """The error answer of last resort, after which the connection closes; silent if a
        response was already begun."""
        if self._answer is not NOT_BEGUN:
            return
        self._closing = True
        try:
            await self.respond(status, body, [*headers, ("Connection", "close")])
        except (ClientGone, h11.LocalProtocolError):
            pass


Handler = Callable[[Connection, Request], Awaitable[None]]


async def serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    """Serve requests on one connection until the peer closes it or it cannot be reused.

    A malformed request gets its status (400, 431, ...) and the connection is closed; a handler that
    fails with an ordinary exception gets a 500 if nothing was sent yet, and the connection is closed
    (one connection's failure stays its own). Cancellation and KeyboardInterrupt pass through.
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
            if conn.closing:
                return
            if not conn.answered:
                # The handler left without answering: that is a lambdalet bug; close cleanly.
                await conn.send_error(500)
                return
    finally:
        await conn.close()

"""A small HTTP/1.1 server connection over trio and h11, shared by the Runtime API and Invoke API.

It moves bytes and nothing else (style anchor H10): requests in, responses out, bodies streamed in
both directions, `Expect: 100-continue` answered when the body is first read, trailers received and
sent, keep-alive cycles. What a request means is decided by the route handlers.
"""

from __future__ import annotations

import email.utils
import re
import logging
import os
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


_checked_names: dict[str | bytes, bytes] = {}  # header names already found to be tokens (ours are few)


def _field(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """A response header as bytes, safe to write: a name must be a token (ours always are); a value
    loses any CR, LF and NUL, which become spaces as Go's net/http does (a decoded client context
    or a caller's trace id must never split a header)."""
    raw_name = _checked_names.get(name)
    if raw_name is None:
        raw_name = name if isinstance(name, bytes) else name.encode("ascii")
        if not raw_name or not _TOKEN.issuperset(raw_name):
            raise ValueError(f"invalid header name {raw_name!r}")
        if len(_checked_names) < 1024:
            _checked_names[name] = raw_name
    if isinstance(value, str):
        try:
            value = value.encode("latin-1")  # what came in as a header goes out as the same bytes
        except UnicodeEncodeError:
            value = value.encode()
    if b"\r" in value or b"\n" in value or b"\0" in value:
        value = value.translate(_NO_CONTROLS)
    return raw_name, value.strip(b" \t")
_date_cache: tuple[int, bytes] = (0, b"")


async def _read_body(chunks: AsyncIterator[bytes], limit: int) -> tuple[bytes, bool]:
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        if size < limit:
            parts.append(chunk[: limit - size])
        size += len(chunk)
    return b"".join(parts), size > limit


def http_date() -> bytes:
    """The Date header value, formatted once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


class _H11Connection:
    """A server-side HTTP connection driven by h11: every request the fast path does not take."""

    def __init__(self, stream: trio.abc.Stream, received: bytes = b"") -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        if received:
            self.h11.receive_data(received)
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
        return await _read_body(self.body_chunks(), limit)

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
    def answered(self) -> bool:
        return self.h11.our_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    @property
    def closing(self) -> bool:
        return self.h11.our_state in (h11.MUST_CLOSE, h11.CLOSED)

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


# --------------------------------------------------------------------------------------------------
# The fast path. h11 costs about a third of the server's CPU per invocation (measured: with it the
# server needs ~670 µs of CPU per Runtime API cycle, without it ~450 µs, Go's RIE ~420 µs), so the
# requests that make up that cycle — HTTP/1.1, a Host, a Content-Length body or none, nothing
# special — are parsed and answered here, and everything else (chunked bodies, Expect, Connection
# or Upgrade headers, HTTP/1.0, anything malformed or unusual, heads over 64 KiB) is handed, bytes
# and all, to h11 for the rest of the connection. tests/test_http.py checks the fast path against
# h11 on generated requests.

FAST_HEAD_LIMIT = 64 * 1024
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_VALUE_CONTROLS = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TO_H11 = frozenset({b"transfer-encoding", b"expect", b"connection", b"upgrade", b"te", b"trailer"})


@dataclass(frozen=True, slots=True)
class SimpleHead:
    method: str
    target: bytes
    headers: Headers
    content_length: int


_token_names: set[bytes] = set()  # header names already seen to be tokens (clients repeat theirs)


def parse_simple_head(head: bytes) -> SimpleHead | None:
    """A request head (without its final CRLF CRLF) the fast path can take, or None for h11."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    method, target = parts[0], parts[1]
    if not method or not _TOKEN.issuperset(method) or _TARGET.fullmatch(target) is None:
        return None
    headers: Headers = []
    length = None
    host = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            return None
        if name not in _token_names:
            if not name or not _TOKEN.issuperset(name):
                return None  # also a folded line (it starts with a space)
            if len(_token_names) < 1024:
                _token_names.add(name)
        value = value.strip(b" \t")
        if _VALUE_CONTROLS.search(value):
            return None
        name = name.lower()
        if name in _TO_H11:
            return None
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name == b"host":
            if host:
                return None
            host = True
        headers.append((name, value))
    if not host:
        return None
    return SimpleHead(method.decode("ascii"), target, headers, length or 0)


def _head_bytes(status: int, headers: Iterable[tuple[str | bytes, str | bytes]]) -> list[bytes]:
    out = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (status, _REASONS.get(status, b""), http_date())]
    for name, value in headers:
        name, value = _field(name, value)
        out.append(b"%s: %s\r\n" % (name, value))
    return out


class Connection:
    """One server-side HTTP connection: the fast path while requests are simple, h11 after that."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._h11: _H11Connection | None = None
        self._buffer = b""
        self._request: Request | None = None
        self._remaining = 0  # body bytes of the current request not read yet
        self._answered = True
        self._closing = False
        self._streaming = False
        # A socket's descriptor, read and written directly: trio's stream wrappers cost more per
        # call than the fast path's parsing (a conflict detector, context managers, a scheduler pass).
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else None

    @property
    def request(self) -> Request | None:
        return self._h11.request if self._h11 is not None else self._request

    async def _receive(self) -> bytes:
        if self._fd is None:
            try:
                return await self.stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientGone from exc
        while True:
            try:
                return os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._fd)
            except OSError as exc:  # reset by the peer, or closed under us
                raise ClientGone from exc

    async def next_request(self) -> Request | None:
        """The next request's head, or None when the peer closed the connection between requests."""
        if self._h11 is not None:
            return await self._h11.next_request()
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > FAST_HEAD_LIMIT:
                return await self._to_h11()
            data = await self._receive_or_none()
            if not data:
                return await self._to_h11() if self._buffer else None
            self._buffer += data
        head = parse_simple_head(self._buffer[:end])
        if head is None:
            return await self._to_h11()
        self._buffer = self._buffer[end + 4:]
        path, _, query = head.target.decode("latin-1").partition("?")
        self._request = Request(head.method, path, query, head.headers, b"1.1")
        self._remaining = head.content_length
        self._answered = False
        return self._request

    async def _receive_or_none(self) -> bytes:
        try:
            return await self._receive()
        except ClientGone:
            return b""

    async def _to_h11(self) -> Request | None:
        self._h11 = _H11Connection(self.stream, self._buffer)
        self._buffer = b""
        return await self._h11.next_request()

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The request body as it arrives; trailers end up on the request."""
        if self._h11 is not None:
            async for chunk in self._h11.body_chunks():
                yield chunk
            return
        while self._remaining:
            if not self._buffer:
                self._buffer = await self._receive()
                if not self._buffer:
                    raise h11.RemoteProtocolError(
                        "peer closed connection without sending complete message body", 400)
            chunk, self._buffer = self._buffer[:self._remaining], self._buffer[self._remaining:]
            self._remaining -= len(chunk)
            yield chunk

    async def read_body(self, limit: int) -> tuple[bytes, bool]:
        """The whole body, up to `limit` bytes; the rest is read and dropped. (body, exceeded)."""
        return await _read_body(self.body_chunks(), limit)

    async def _write(self, data: bytes) -> None:
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
            self._closing = True
            raise ClientGone from exc

    async def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        *,
        content_length: bool = True,
    ) -> None:
        """Send a whole response, in one write. A request body left unread is drained (or the
        connection closed) so the next request can be read."""
        if self._h11 is not None:
            return await self._h11.respond(status, body, headers, content_length=content_length)
        out = _head_bytes(status, headers)
        if content_length:
            out.append(b"Content-Length: %d\r\n" % len(body))
        out.append(b"\r\n")
        if self._request is None or self._request.method != "HEAD":
            out.append(body)
        self._answered = True
        await self._write(b"".join(out))
        await self._finish_request()

    async def start_stream(self, status: int, headers: Iterable[tuple[str | bytes, str | bytes]] = ()) -> None:
        """Begin a response whose body follows in pieces (chunked)."""
        if self._h11 is not None:
            return await self._h11.start_stream(status, headers)
        self._streaming = True
        await self._write(b"".join([*_head_bytes(status, headers), b"Transfer-Encoding: chunked\r\n\r\n"]))

    async def send_data(self, data: bytes) -> None:
        if self._h11 is not None:
            return await self._h11.send_data(data)
        if data:
            await self._write(b"%x\r\n%s\r\n" % (len(data), data))

    async def end_stream(self, trailers: Headers | None = None) -> None:
        if self._h11 is not None:
            return await self._h11.end_stream(trailers)
        fields = b"".join(b"%s: %s\r\n" % _field(name, value) for name, value in trailers or ())
        self._answered, self._streaming = True, False
        await self._write(b"0\r\n" + fields + b"\r\n")
        await self._finish_request()

    async def _finish_request(self) -> None:
        if self._remaining:
            try:
                with trio.move_on_after(5):
                    async for _ in self.body_chunks():
                        pass
            except (ClientGone, h11.RemoteProtocolError):
                pass
            if self._remaining:
                self._closing = True
        if self._closing:
            await self.close()

    @property
    def answered(self) -> bool:
        return self._h11.answered if self._h11 is not None else self._answered

    @property
    def closing(self) -> bool:
        return self._h11.closing if self._h11 is not None else self._closing

    async def close(self) -> None:
        await trio.aclose_forcefully(self.stream)

    async def send_error(self, status: int, body: bytes = b"", headers=()) -> None:
        """The error answer of last resort; silent if a response was already begun."""
        if self._h11 is not None:
            return await self._h11.send_error(status, body, headers)
        if self._answered and self._request is not None or self._streaming:
            return
        self._closing = True
        try:
            await self.respond(status, body, [*headers, ("Connection", "close")])
        except ClientGone:
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
            if conn.closing:
                return
            if not conn.answered:
                # The handler left without answering: that is a lambdalet bug; close cleanly.
                await conn.send_error(500)
                return
    finally:
        await conn.close()

"""The two ways a server connection reads requests and writes responses: one interface, and no I/O
(like h11 itself): bytes from the peer are fed in, requests and body pieces come out, and every
response is returned as the bytes to send. runtime_api/http.py is the trio shell that drives them.

`FastFraming` takes the simple requests every invocation is made of, with runtime_api/http1.py's
pure functions; at the first request it cannot take it answers TO_H11, and the connection goes on
with `H11Framing`, fed the bytes the fast path had buffered, for good.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field

import h11

from . import http1
from .http1 import Headers, HeaderItems

MAX_HEADER_BYTES = 1 << 20  # Go's net/http default (DefaultMaxHeaderBytes); Node's RIC sends big X-Ray headers

_CACHED_HEAD_BYTES = 2048  # longer heads are parsed each time


@functools.lru_cache(maxsize=256)
def _parse(raw: bytes) -> tuple[str, str, str, Headers, int] | None:
    """(method, path, query, headers, content length) of a head the fast path takes, else None. A
    runtime's `next`, an extension's `event/next` and a caller's repeated invoke send the same head
    every time, and parsing is a pure function of its bytes: small heads are kept."""
    head = http1.parse_simple_head(raw)
    if head is None:
        return None
    path, _, query = head.target.decode("latin-1").partition("?")
    return head.method, path, query, head.headers, head.content_length


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: Headers  # lower-case names, as h11 gives them
    http_version: bytes
    trailers: Headers = field(default_factory=list)
    # The head as received (fast path) or h11's header items as received: for `original_headers`.
    raw: bytes | Headers = b""

    def header(self, name: bytes) -> str | None:
        """The first value of a header (name in lower case), decoded as Latin-1 like HTTP."""
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    def original_headers(self) -> Headers:
        """The headers with their names as the client wrote them (API Gateway's REST APIs pass them so)."""
        if not isinstance(self.raw, bytes):
            return list(self.raw)
        lines = self.raw.split(b"\r\n")[1:]
        return [(line.partition(b":")[0], value) for line, (_, value) in zip(lines, self.headers)]

    def trailer(self, name: bytes) -> str | None:
        for key, value in self.trailers:
            if key == name:
                return value.decode("latin-1")
        return None


class Event(enum.Enum):
    """What next_request or next_body can answer besides a request or a piece of body."""
    NEED_DATA = "more bytes from the peer are needed first"
    TO_H11 = "the fast path cannot take this request: h11 takes the connection from here"
    END = "the request body is over"


NEED_DATA, TO_H11, END = Event.NEED_DATA, Event.TO_H11, Event.END


class FastFraming:
    """The fast path: requests http1.parse_simple_head takes, bodies by Content-Length, answers
    written by http1's functions (HTTP/1.1 keep-alive throughout)."""

    def __init__(self) -> None:
        self.buffer = b""  # received and not consumed; what h11 is fed on TO_H11
        self.closed = False  # the peer closed its side
        self._remaining = 0  # body bytes of the current request not read yet

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; b"" when it closed its side."""
        if data:
            self.buffer += data
        else:
            self.closed = True

    def next_request(self) -> Request | Event | None:
        """The next request's head; NEED_DATA; TO_H11; or None when the peer closed the connection
        between requests."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if self.closed:
                return TO_H11 if self.buffer else None  # h11 says what is wrong with a partial head
            return TO_H11 if len(self.buffer) > http1.FAST_HEAD_LIMIT else NEED_DATA
        raw = self.buffer[:end]
        parsed = _parse(raw) if len(raw) <= _CACHED_HEAD_BYTES else _parse.__wrapped__(raw)
        if parsed is None:
            return TO_H11
        method, path, query, headers, self._remaining = parsed
        self.buffer = self.buffer[end + 4:]
        return Request(method, path, query, list(headers), b"1.1", raw=raw)  # a list of its own for each request

    def next_body(self) -> bytes | Event:
        """The next piece of the request body, as it arrived; NEED_DATA; or END."""
        if not self._remaining:
            return END
        if not self.buffer:
            if self.closed:
                raise h11.RemoteProtocolError("peer closed connection without sending complete message body", 400)
            return NEED_DATA
        piece, self.buffer = self.buffer[:self._remaining], self.buffer[self._remaining:]
        self._remaining -= len(piece)
        return piece

    def pending_continue(self) -> bytes:
        """A `100 Continue` the client waits for before it sends the body: never here (requests
        with Expect go to h11)."""
        return b""

    @property
    def body_left(self) -> bool:
        """Some of the request body can still be read."""
        return self._remaining > 0

    @property
    def reusable(self) -> bool:
        """Once the response is sent, the connection can take another request."""
        return self._remaining == 0

    def response(self, status: int, headers: HeaderItems, content_length: int | None, body: bytes,
                 date: bytes) -> bytes:
        """A whole response; `body` is what is sent (nothing for HEAD), `content_length` what is
        declared (None: no Content-Length)."""
        return http1.response_head(status, headers, date, content_length=content_length) + body

    def stream_head(self, status: int, headers: HeaderItems, date: bytes) -> bytes:
        return http1.response_head(status, headers, date, chunked=True)

    def data(self, data: bytes) -> bytes:
        return http1.chunk(data)

    def end(self, trailers: HeaderItems) -> bytes:
        return http1.last_chunk(trailers)

    def send_failed(self) -> None:
        pass


_BODY_OVER = frozenset({h11.DONE, h11.MUST_CLOSE, h11.CLOSED, h11.MIGHT_SWITCH_PROTOCOL})


class H11Framing:
    """Every request the fast path does not take, by h11, for the rest of the connection."""

    def __init__(self, received: bytes = b"", closed: bool = False) -> None:
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.h11.receive_data(received)
        if closed:
            self.h11.receive_data(b"")
        self._request: Request | None = None

    def receive_data(self, data: bytes) -> None:
        self.h11.receive_data(data)

    def next_request(self) -> Request | Event | None:
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        event = self.h11.next_event()
        if event is h11.NEED_DATA:
            return NEED_DATA
        if type(event) is h11.ConnectionClosed:
            return None
        assert type(event) is h11.Request, event
        path, _, query = event.target.decode("latin-1").partition("?")
        self._request = Request(event.method.decode("ascii"), path, query, list(event.headers), event.http_version,
                                raw=list(event.headers.raw_items()))
        return self._request

    def next_body(self) -> bytes | Event:
        """As FastFraming's; trailers end up on the request."""
        if self.h11.their_state in _BODY_OVER:
            return END
        event = self.h11.next_event()
        if type(event) is h11.Data:
            return bytes(event.data)
        if type(event) is h11.EndOfMessage:
            if self._request is not None:
                self._request.trailers = list(event.headers)
            return END
        assert event is h11.NEED_DATA, event  # a request body never ends by the connection closing
        return NEED_DATA

    def pending_continue(self) -> bytes:
        if not self.h11.they_are_waiting_for_100_continue:
            return b""
        return self.h11.send(h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue"))

    @property
    def body_left(self) -> bool:
        return self.h11.their_state is h11.SEND_BODY

    @property
    def reusable(self) -> bool:
        # Not when h11 decided the connection ends with this response (our side MUST_CLOSE:
        # HTTP/1.0, a Connection: close either way, a body that ends by closing the connection).
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def _head(self, status: int, headers: HeaderItems, date: bytes) -> h11.Response:
        fields = [(b"Date", date), *(http1.field(name, value) for name, value in headers)]
        # The fields are made safe by http1.field, so h11's per-header regex validation (the larger
        # part of its cost per response) is skipped the way h11 skips it for what it parsed itself.
        return h11.Response(status_code=status, headers=fields, reason=http1.REASONS.get(status, b""), _parsed=True)

    def response(self, status: int, headers: HeaderItems, content_length: int | None, body: bytes,
                 date: bytes) -> bytes:
        if content_length is not None:
            headers = [*headers, ("Content-Length", str(content_length))]
        out = [self.h11.send(self._head(status, headers, date))]
        if body:
            out.append(self.h11.send(h11.Data(data=body)))
        out.append(self.h11.send(h11.EndOfMessage()))
        return b"".join(out)

    def stream_head(self, status: int, headers: HeaderItems, date: bytes) -> bytes:
        return self.h11.send(self._head(status, headers, date))  # chunked for HTTP/1.1, to close for 1.0

    def data(self, data: bytes) -> bytes:
        return self.h11.send(h11.Data(data=data))

    def end(self, trailers: HeaderItems) -> bytes:
        if self.h11.their_http_version != b"1.1":
            trailers = ()  # no chunked encoding, so nowhere to put them
        fields = [http1.field(name, value) for name, value in trailers]
        return self.h11.send(h11.EndOfMessage(headers=fields, _parsed=True))

    def send_failed(self) -> None:
        self.h11.send_failed()

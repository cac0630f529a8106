"""A minimal HTTP/1.1 client codec: pure functions that build requests and a parser that turns bytes
into responses. No sockets here (the transport is `bootstrap.client`); everything is tested byte for
byte, the parser also one byte at a time.

Only what the Runtime API needs: requests with a Content-Length body or a chunked body (with
trailers), responses with a Content-Length body, a chunked body, no body, or a body up to EOF.
"""

CRLF = b"\r\n"


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.1 as we understand it."""


def build_request(method, target, headers, body=None):
    """Bytes of one request. `headers` is a sequence of (name, value) pairs sent in that order and
    spelling; Content-Length is appended when `body` is not None (bytes)."""
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    if body is None:
        parts.append("\r\n")
        return "".join(parts).encode("utf-8", "surrogateescape")
    parts.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape") + body


def build_request_head(method, target, headers):
    """The head of a request whose body follows separately (e.g. chunked)."""
    parts = [f"{method} {target} HTTP/1.1\r\n"]
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("utf-8", "surrogateescape")


def encode_chunk(data):
    """One chunk of a chunked body; empty data encodes to nothing (a zero-size chunk would end
    the body)."""
    if not data:
        return b""
    return b"%x\r\n%b\r\n" % (len(data), data)


def encode_last_chunk(trailers=()):
    """The terminating zero-size chunk, with optional trailer fields."""
    return b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode("utf-8", "surrogateescape") for n, v in trailers) + CRLF


class Response:
    __slots__ = ("status", "reason", "headers", "body", "keep_alive")

    def __init__(self, status, reason, headers, body, keep_alive):
        self.status = status
        self.reason = reason
        # Lower-cased name -> value (repeated fields joined with ", ").
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive

    def __repr__(self):
        return f"Response({self.status}, {self.headers!r}, {self.body[:64]!r})"


# Parser states
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_CRLF, _TRAILERS, _UNTIL_EOF = range(7)
MAX_HEAD = 64 * 1024


class ResponseParser:
    """Sans-I/O response parser. Feed bytes with `feed()`; `next_response()` returns a complete
    `Response` or None when it needs more data. `feed_eof()` marks the end of the stream (which
    completes a body that runs until close, and is an error anywhere else mid-message)."""

    def __init__(self, head_request=False):
        self._buf = bytearray()
        self._state = _HEAD
        self._eof = False
        self._head_request = head_request
        self._reset_message()

    def _reset_message(self):
        self._status = 0
        self._reason = ""
        self._headers = {}
        self._body = []
        self._remaining = 0
        self._keep_alive = True

    def feed(self, data):
        self._buf += data

    def feed_eof(self):
        self._eof = True

    @property
    def idle(self):
        """True when no partial message is buffered."""
        return self._state == _HEAD and not self._buf

    def next_response(self):
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEAD:
                        raise ProtocolError("response head too long")
                    if self._eof and buf:
                        raise ProtocolError("connection closed inside a response head")
                    return None
                head = bytes(buf[:end])
                del buf[: end + 4]
                if self._parse_head(head):
                    return self._finish()
            elif state == _LENGTH:
                if len(buf) < self._remaining:
                    if self._eof:
                        raise ProtocolError("connection closed inside a response body")
                    return None
                self._body.append(bytes(buf[: self._remaining]))
                del buf[: self._remaining]
                return self._finish()
            elif state == _CHUNK_SIZE:
                end = buf.find(CRLF)
                if end < 0:
                    if self._eof:
                        raise ProtocolError("connection closed inside a chunk size")
                    return None
                line = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {line!r}") from None
                if size == 0:
                    self._state = _TRAILERS
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                if not buf:
                    if self._eof:
                        raise ProtocolError("connection closed inside a chunk")
                    return None
                take = min(len(buf), self._remaining)
                self._body.append(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_CRLF
            elif state == _CHUNK_CRLF:
                if len(buf) < 2:
                    if self._eof:
                        raise ProtocolError("connection closed after a chunk")
                    return None
                if buf[:2] != CRLF:
                    raise ProtocolError("chunk not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                # Trailer fields are read and dropped: nothing in the Runtime API sends them to us.
                end = buf.find(CRLF)
                if end < 0:
                    if self._eof:
                        raise ProtocolError("connection closed inside trailers")
                    return None
                del buf[: end + 2]
                if end == 0:
                    return self._finish()
            else:  # _UNTIL_EOF
                if buf:
                    self._body.append(bytes(buf))
                    buf.clear()
                if not self._eof:
                    return None
                self._keep_alive = False
                return self._finish()

    def _parse_head(self, head):
        """Parse status line and fields; set the body state. True when the message has no body."""
        lines = head.split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ProtocolError(f"bad status line {status_line!r}")
        try:
            self._status = int(parts[1])
        except ValueError:
            raise ProtocolError(f"bad status line {status_line!r}") from None
        self._reason = parts[2] if len(parts) > 2 else ""
        headers = self._headers
        for raw in lines[1:]:
            # Field values are UTF-8 where they are not ASCII (a client context may carry any text).
            name, sep, value = raw.decode("utf-8", "surrogateescape").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {raw!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        connection = headers.get("connection", "").lower()
        if parts[0] == "HTTP/1.0":
            self._keep_alive = "keep-alive" in connection
        else:
            self._keep_alive = "close" not in connection
        status = self._status
        if 100 <= status < 200:
            # Interim response (e.g. 100 Continue): drop it and read the real one.
            self._reset_message()
            return False
        if self._head_request or status in (204, 304):
            return True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._state = _CHUNK_SIZE
            return False
        length = headers.get("content-length")
        if length is not None:
            try:
                self._remaining = int(length)
            except ValueError:
                raise ProtocolError(f"bad Content-Length {length!r}") from None
            if self._remaining == 0:
                return True
            self._state = _LENGTH
            return False
        self._state = _UNTIL_EOF
        return False

    def _finish(self):
        response = Response(self._status, self._reason, self._headers, b"".join(self._body),
                            self._keep_alive)
        self._state = _HEAD
        self._reset_message()
        return response

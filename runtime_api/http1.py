"""The HTTP/1.1 wire format of the server's fast path, as pure functions (no sockets, no clock).

Every Runtime API cycle and Invoke call is a few HTTP requests, and parsing and writing them with h11
is a large share of the server's CPU per invocation; the fast path is what brings that CPU down to
what AWS's RIE (Go) spends (the "server CPU" column of benchmarks/results/warm.md). So the requests
of that simple shape (HTTP/1.1, an origin-form target, one Host, a Content-Length body or none, no
header that changes framing or the connection) are parsed here, and everything else goes to h11 for
the rest of the connection:

* another HTTP version: HTTP/1.0's keep-alive and framing rules are h11's;
* `Transfer-Encoding` (chunked request bodies), `Expect` (`100-continue`), `Connection`, `Upgrade`,
  `TE` and `Trailer`: h11 knows what they do to framing and keep-alive;
* no Host or two of them, two Content-Lengths or one that is not digits: h11 answers 400;
* anything else h11 may refuse: a target that is not origin-form, a header name that is not a token,
  a folded line, a control character in a value;
* a head larger than FAST_HEAD_LIMIT (h11 has its own limit, and its 431).

tests/test_http.py checks both directions against h11 on generated input: a request this parser
takes reads the same in h11's server, and a response these writers produce reads back the same in
h11's client.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus

Headers = list[tuple[bytes, bytes]]
HeaderItems = Iterable[tuple[str | bytes, str | bytes]]

FAST_HEAD_LIMIT = 64 * 1024

REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_VALUE_CONTROLS = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TO_H11 = frozenset({b"transfer-encoding", b"expect", b"connection", b"upgrade", b"te", b"trailer"})
_NO_CONTROLS = bytes.maketrans(b"\r\n\0", b"   ")


@dataclass(frozen=True, slots=True)
class SimpleHead:
    method: str
    target: bytes
    headers: Headers  # lower-case names, values without surrounding blanks, as h11 gives them
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


_checked_names: dict[str | bytes, bytes] = {}  # header names already found to be tokens (ours are few)


def field(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """A response header as bytes, safe to write: a name must be a token (ours always are); a value
    loses any CR, LF and NUL, which become spaces as Go's net/http does (a decoded client context
    or a caller's trace id must never split a header), and its surrounding blanks."""
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


@functools.lru_cache(maxsize=256)
def _line(name: str | bytes, value: str | bytes) -> bytes:
    """A header line. Most of a warm invoke's response headers (Content-Type, the function's ARN)
    are the same every time, and `field` is a pure function: short lines are kept (request ids and
    deadlines, which never repeat, just pass through)."""
    return b"%s: %s\r\n" % field(name, value)


_CACHED_VALUE_LENGTH = 200  # longer values (a log tail, a client context) are written each time


def response_head(status: int, headers: HeaderItems, date: bytes, *,
                  content_length: int | None = None, chunked: bool = False) -> bytes:
    """An HTTP/1.1 response head, up to and including its blank line: the status line, Date, the
    headers made safe by `field`, then the body's framing (a Content-Length, `Transfer-Encoding:
    chunked`, or neither for a response that has no body by its status). The framing headers are
    this function's: the caller does not pass them."""
    out = [b"HTTP/1.1 %d %s\r\nDate: %s\r\n" % (status, REASONS.get(status, b""), date)]
    for name, value in headers:
        out.append(_line(name, value) if len(value) <= _CACHED_VALUE_LENGTH else b"%s: %s\r\n" % field(name, value))
    if content_length is not None:
        out.append(b"Content-Length: %d\r\n" % content_length)
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body; nothing for no data (an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def last_chunk(trailers: HeaderItems = ()) -> bytes:
    """The end of a chunked body, with its trailers made safe by `field`."""
    return b"0\r\n%s\r\n" % b"".join(b"%s: %s\r\n" % field(name, value) for name, value in trailers)

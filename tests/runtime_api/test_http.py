"""The HTTP layer checked against h11, the reference it hands every unusual request to.

Both directions of the fast path, on generated input, fed whole and one byte at a time: a request
the fast path takes reads the same in h11's server; a response its writers produce reads back the
same in h11's client. Then the connection as a whole, over in-memory streams: keep-alive, close and
error decisions stay the same as a connection goes from the fast path to h11. As h11's own tests do,
everything is driven with bytes: no sockets."""

from __future__ import annotations

from http import HTTPStatus

import h11
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime_api import http1
from runtime_api.http import serve_connection
from runtime_api.http_framing import END, NEED_DATA, TO_H11, FastFraming

TOKEN_ALPHABET = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=12)


def feed(data: bytes, whole: bool) -> list[bytes]:
    return [data] if whole else [data[i:i + 1] for i in range(len(data))]


# -- Requests: what the fast path takes, h11's server reads the same way ---------------------------

def h11_reading(data: bytes):
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request = conn.next_event()
    body = b""
    while True:
        event = conn.next_event()
        if type(event) is h11.Data:
            body += event.data
        else:
            assert type(event) is h11.EndOfMessage, event
            break
    return request, body


def fast_reading(pieces: list[bytes]):
    """The requests and bodies FastFraming reads from `pieces`, or TO_H11 where it hands over."""
    framing = FastFraming()
    pieces = iter(pieces)
    read = []
    while True:
        request = framing.next_request()
        while request is NEED_DATA:
            framing.receive_data(next(pieces, b""))
            request = framing.next_request()
        if request is None or request is TO_H11:
            return read, request
        body = b""
        while (piece := framing.next_body()) is not END:
            if piece is NEED_DATA:
                framing.receive_data(next(pieces, b""))
            else:
                body += piece
        read.append((request, body))


# Values mostly printable, sometimes with a tab, a control character, a lone CR or LF, or non-ASCII.
values = st.text(alphabet=st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                    st.sampled_from("\t\x00\x01\x7f\r\n\x80é")), max_size=30)
header = st.tuples(st.one_of(tokens, st.sampled_from(["Content-Type", "Lambda-Runtime-Function-Error-Type",
                                                      "X-Amz-Log-Type", "Transfer-Encoding", "Expect",
                                                      "Connection", "Host"])), values)


@settings(max_examples=400, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "X-CUSTOM"]),
       path=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=40),
       headers=st.lists(header, max_size=6), body=st.binary(max_size=64), host=st.booleans(),
       whole=st.booleans())
def test_what_the_fast_path_takes_h11_reads_the_same(method, path, headers, body, host, whole):
    lines = [f"{method} /{path} HTTP/1.1"]
    if host:
        lines.append("Host: x")
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode()
    simple = http1.parse_simple_head(head)
    try:
        request, received = h11_reading(head + b"\r\n\r\n" + body)
    except h11.RemoteProtocolError:
        assert simple is None, "the fast path took a request h11 refuses"
        return
    if simple is None:
        return  # left to h11, which is always allowed
    assert simple.method == request.method.decode()
    assert simple.target == request.target
    assert simple.headers == [(name, value) for name, value in request.headers]
    assert body == received and simple.content_length == len(body)
    # The same through the framing, with a second request behind it: the body ends where it should.
    data = head + b"\r\n\r\n" + body + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    read, last = fast_reading(feed(data, whole))
    assert last is None
    [(first, first_body), (second, _)] = read
    assert (first.method, first.path, first.query) == (method, *request.target.decode().partition("?")[::2])
    assert first.headers == simple.headers and first_body == body
    assert (second.method, second.path) == ("GET", "/next")


@pytest.mark.parametrize("head", [
    b"GET / HTTP/1.0\r\nHost: x",  # HTTP/1.0 keep-alive rules: h11's
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked",
    b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 9",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close",
    b"GET / HTTP/1.1",  # no Host: h11 answers 400
    b"GET / HTTP/1.1\r\nHost: x\r\n folded: line",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2",
    b"GET /a b HTTP/1.1\r\nHost: x",
    b"GET http://x/ HTTP/1.1\r\nHost: x",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b",
])
def test_anything_unusual_goes_to_h11(head):
    assert http1.parse_simple_head(head) is None
    read, last = fast_reading([head + b"\r\n\r\n"])
    assert read == [] and last is TO_H11


def test_a_head_too_large_or_cut_short_goes_to_h11():
    assert fast_reading([b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * http1.FAST_HEAD_LIMIT])[1] is TO_H11
    assert fast_reading([b"GET / HTTP/1.1\r\nHo"])[1] is TO_H11  # then the peer closed
    assert fast_reading([])[1] is None


def test_a_runtime_api_request_takes_the_fast_path():
    head = (b"POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
            b"User-Agent: aws-lambda-python/3.11.7-4.2.2\r\nAccept: */*\r\ncontent-type: application/json\r\n"
            b"content-length: 18")
    simple = http1.parse_simple_head(head)
    assert simple.method == "POST" and simple.target == b"/2018-06-01/runtime/invocation/abc/response"
    assert simple.content_length == 18 and (b"content-type", b"application/json") in simple.headers


def test_a_head_seen_before_reads_the_same_and_each_request_has_its_own_headers():
    # A runtime's `next` sends the same head every time: the second (parsed before) must read as the
    # first did, on this connection and on another, and a handler's change to one request's headers
    # must not show in the next.
    data = request("POST", "/2018-06-01/runtime/invocation/next?q=1", b"first", [("X-A", "1")])
    again = request("POST", "/2018-06-01/runtime/invocation/next?q=1", b"other", [("X-A", "1")])
    assert data.split(b"\r\n\r\n")[0] == again.split(b"\r\n\r\n")[0]
    read, end = fast_reading([data + data])
    assert end is None and [body for _, body in read] == [b"first", b"first"]
    read[0][0].headers.append((b"x-added", b"by a handler"))
    (later, body), = fast_reading([again])[0]
    assert body == b"other" and (later.method, later.path, later.query) == ("POST", read[1][0].path, "q=1")
    assert later.headers == read[1][0].headers == [(b"host", b"x"), (b"content-length", b"5"), (b"x-a", b"1")]


def test_a_header_line_without_a_colon_goes_to_h11_even_for_a_known_name():
    assert http1.parse_simple_head(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*") is not None
    assert http1.parse_simple_head(b"GET / HTTP/1.1\r\nHost: x\r\nAccept") is None


# -- Responses: what the fast path writes, h11's client reads back the same way --------------------

# Values as handlers pass them: bytes or str, with CR, LF and NUL that must not split a header,
# blanks around them, and Latin-1 or other non-ASCII text. (Other control characters are written
# as given, as Go's net/http does; no handler sends them, so they are not generated.)
_value_chars = st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7e), st.sampled_from("\t\r\n\0"),
                         st.characters(min_codepoint=0xa0, max_codepoint=0x2fff))
field_values = st.one_of(st.text(alphabet=_value_chars, max_size=20),
                         st.text(alphabet=_value_chars, max_size=20).map(lambda text: text.encode()))
# The framing headers are the writer's own, and h11's client would refuse a second Content-Length.
field_names = tokens.filter(lambda name: name.lower() not in ("content-length", "transfer-encoding"))
fields = st.lists(st.tuples(st.one_of(field_names, field_names.map(str.encode)), field_values), max_size=5)


def as_read(name: str | bytes, value: str | bytes) -> tuple[bytes, bytes]:
    """A header as h11 reads it back once written safely: name in lower case; CR, LF and NUL turned
    into spaces, then the blanks around the value dropped."""
    if isinstance(value, str):
        try:
            value = value.encode("latin-1")
        except UnicodeEncodeError:
            value = value.encode()
    for control in (b"\r", b"\n", b"\0"):
        value = value.replace(control, b" ")
    name = name if isinstance(name, bytes) else name.encode()
    return name.lower(), value.strip(b" \t")


def h11_client_reading(method: bytes, data: bytes, whole: bool):
    """(response, body, trailers) as h11's client reads `data` after sending a `method` request."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    response, body, trailers = None, b"", None
    for piece in feed(data, whole):
        client.receive_data(piece)
        while (event := client.next_event()) is not h11.NEED_DATA:
            if type(event) is h11.Response:
                response = event
            elif type(event) is h11.Data:
                body += event.data
            else:
                assert type(event) is h11.EndOfMessage, event
                trailers = list(event.headers)
                assert client.their_state is h11.DONE
    assert trailers is not None, "the response did not end"
    return response, body, trailers


DATE = b"Tue, 01 Dec 2026 10:00:00 GMT"
# No 1xx (not a final answer), and no body for 204 and 304, which never have one.
statuses = st.integers(200, 599).filter(lambda status: status not in (204, 304))


def reason(status: int) -> bytes:
    return HTTPStatus(status).phrase.encode() if status in HTTPStatus._value2member_map_ else b""


@settings(max_examples=300, deadline=None)
@given(status=statuses, headers=fields, body=st.binary(max_size=40), head_request=st.booleans(), whole=st.booleans())
def test_a_response_with_a_content_length_reads_back_the_same_in_h11(status, headers, body, head_request, whole):
    data = http1.response_head(status, headers, DATE, content_length=len(body))
    if not head_request:
        data += body  # a response to HEAD declares the length of the body it does not send
    response, received, trailers = h11_client_reading(b"HEAD" if head_request else b"GET", data, whole)
    assert (response.status_code, response.reason, response.http_version) == (status, reason(status), b"1.1")
    assert list(response.headers) == [(b"date", DATE), *(as_read(name, value) for name, value in headers),
                                      (b"content-length", str(len(body)).encode())]
    assert received == (b"" if head_request else body) and trailers == []


@settings(max_examples=300, deadline=None)
@given(status=statuses, headers=fields, pieces=st.lists(st.binary(max_size=20), max_size=5), trailers=fields,
       whole=st.booleans())
def test_a_chunked_response_with_trailers_reads_back_the_same_in_h11(status, headers, pieces, trailers, whole):
    data = (http1.response_head(status, headers, DATE, chunked=True)
            + b"".join(http1.chunk(piece) for piece in pieces) + http1.last_chunk(trailers))
    response, received, received_trailers = h11_client_reading(b"POST", data, whole)
    assert (response.status_code, response.reason) == (status, reason(status))
    assert list(response.headers) == [(b"date", DATE), *(as_read(name, value) for name, value in headers),
                                      (b"transfer-encoding", b"chunked")]
    assert received == b"".join(pieces)
    assert received_trailers == [as_read(name, value) for name, value in trailers]


def test_a_response_without_a_body_by_its_status_has_no_framing():
    data = http1.response_head(204, [("X-Amzn-RequestId", "r")], DATE)
    assert data == b"HTTP/1.1 204 No Content\r\nDate: " + DATE + b"\r\nX-Amzn-RequestId: r\r\n\r\n"
    response, body, _ = h11_client_reading(b"POST", data, whole=False)
    assert response.status_code == 204 and body == b""


def test_an_empty_piece_is_not_the_last_chunk():
    assert http1.chunk(b"") == b""
    assert http1.last_chunk() == b"0\r\n\r\n"


@given(name=st.text(min_size=1, max_size=8).filter(lambda name: not set(name) <= set(TOKEN_ALPHABET)))
def test_a_header_name_that_is_not_a_token_is_never_written(name):
    with pytest.raises((ValueError, UnicodeEncodeError)):
        http1.response_head(200, [(name, "v")], DATE, content_length=0)


# -- The connection: keep-alive, close and errors, from the fast path to h11 -------------------------

async def echo(conn, request):
    """Answers with the body, the request's method and path, and its trailers as headers."""
    body, _ = await conn.read_body(1 << 20)
    await conn.respond(200, body, [("X-Request", f"{request.method} {request.path}"), *request.trailers])


async def ignore_body(conn, request):
    await conn.respond(202, b"accepted")


async def stream(conn, request):
    await conn.start_stream(200, [("Content-Type", "text/plain")])
    await conn.send_data(b"first,")
    await conn.send_data(b"")
    await conn.send_data(b"second")
    await conn.end_stream([(b"Lambda-Runtime-Function-Error-Type", b"Function.StreamError")])


async def exchange(handler, data: bytes, *, whole: bool = True, eof: bool = False) -> bytes:
    """What serve_connection answers to `data` until it closes the connection (or, with eof, until
    the client closed its side and the server is done)."""
    client, server = trio.testing.memory_stream_pair()
    received = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, handler)
        for piece in feed(data, whole):
            await client.send_all(piece)
        if eof:
            await client.send_eof()
        while chunk := await client.receive_some():
            received += chunk
    return bytes(received)


def request(method: str, target: str = "/", body: bytes = b"", headers=(), trailers=()) -> bytes:
    """A request as h11's client writes it: chunked when given trailers, else with a Content-Length."""
    client = h11.Connection(h11.CLIENT)
    framing = [("Transfer-Encoding", "chunked")] if trailers else [("Content-Length", str(len(body)))]
    data = client.send(h11.Request(method=method, target=target, headers=[("Host", "x"), *framing, *headers]))
    if body:
        data += client.send(h11.Data(data=body))
    return data + client.send(h11.EndOfMessage(headers=list(trailers)))


def responses(data: bytes, methods: list[bytes]):
    """(status, headers, body, trailers) of each response in `data`, as h11's client reads them."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(data)
    read = []
    for method in methods:
        if read:
            client.start_next_cycle()
        client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        client.send(h11.EndOfMessage())
        status, headers, body = None, None, b""
        while True:
            event = client.next_event()
            if type(event) is h11.Response:
                status, headers = event.status_code, dict(event.headers)
            elif type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                read.append((status, headers, body, list(event.headers)))
                break
            else:
                assert type(event) is h11.InformationalResponse, event
    return read


@pytest.mark.parametrize("whole", [True, False], ids=["whole", "byte-by-byte"])
async def test_a_connection_keeps_serving_once_h11_took_it(whole):
    data = (request("POST", "/fast", b"one")
            + request("POST", "/chunked", b"two", trailers=[("X-Trailer", "t")])  # over to h11 here
            + request("HEAD", "/head", b"")
            + request("POST", "/simple", b"three")
            + request("GET", "/last", headers=[("Connection", "close")]))
    read = responses(await exchange(echo, data, whole=whole), [b"POST", b"POST", b"HEAD", b"POST", b"GET"])
    assert [(status, headers[b"x-request"], body) for status, headers, body, _ in read] == [
        (200, b"POST /fast", b"one"), (200, b"POST /chunked", b"two"), (200, b"HEAD /head", b""),
        (200, b"POST /simple", b"three"), (200, b"GET /last", b"")]
    assert read[1][1][b"x-trailer"] == b"t"  # the request's trailers reached the handler
    assert read[4][1][b"connection"] == b"close"  # and the server closed after it, or exchange would wait


@pytest.mark.parametrize("trailers", [(), [("X-T", "t")]], ids=["fast", "h11"])
async def test_a_body_the_handler_left_unread_is_drained_and_the_connection_kept(trailers):
    data = (request("POST", "/", b"x" * 100_000, trailers=trailers)
            + request("GET", "/", headers=[("Connection", "close")]))
    read = responses(await exchange(ignore_body, data), [b"POST", b"GET"])
    assert [(status, body) for status, _, body, _ in read] == [(202, b"accepted"), (202, b"accepted")]


@pytest.mark.parametrize("trailers", [(), [("X-T", "t")]], ids=["fast", "h11"])
async def test_a_streamed_response_ends_with_its_trailers_and_keeps_the_connection(trailers):
    data = request("POST", "/", b"in", trailers=trailers) + request("POST", "/", headers=[("Connection", "close")])
    read = responses(await exchange(stream, data), [b"POST", b"POST"])
    for status, headers, body, received_trailers in read:
        assert (status, headers[b"transfer-encoding"], body) == (200, b"chunked", b"first,second")
        assert received_trailers == [(b"lambda-runtime-function-error-type", b"Function.StreamError")]


async def test_http_1_0_is_answered_without_chunks_or_trailers_and_closed():
    answer = await exchange(stream, b"GET / HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"chunked" not in head.lower()
    assert body == b"first,second"


async def test_expect_100_continue_is_answered_before_the_body_is_sent():
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, server, echo)
        await client.send_all(b"POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n"
                              b"Connection: close\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += await client.receive_some(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        await client.send_all(b"body")
        answer = b""
        while chunk := await client.receive_some():
            answer += chunk
    [(status, _, body, _)] = responses(answer, [b"POST"])
    assert (status, body) == (200, b"body")


@pytest.mark.parametrize("data, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (2 << 20) + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n", 400),  # after a good one on the fast path
], ids=["garbage", "no-host", "head-too-large", "garbage-after-a-request"])
async def test_a_malformed_request_gets_its_status_and_the_connection_closes(data, status):
    answer = await exchange(echo, data)
    last = answer[answer.rfind(b"HTTP/1.1 "):]
    assert last.startswith(b"HTTP/1.1 %d " % status) and b"\r\nConnection: close\r\n" in last


@pytest.mark.parametrize("data", [
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nshort",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nshort",
], ids=["fast", "h11"])
async def test_a_body_cut_short_gets_400(data):
    answer = await exchange(echo, data, eof=True)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"\r\nConnection: close\r\n" in answer


async def test_a_failing_handler_gets_500_unless_it_began_answering():
    async def fails(conn, request):
        if request.path == "/streaming":
            await conn.start_stream(200)
            await conn.send_data(b"partial")
        raise RuntimeError("a lambdalet bug")

    answer = await exchange(fails, request("GET", "/"))
    assert answer.startswith(b"HTTP/1.1 500 Internal Server Error\r\n") and b"\r\nConnection: close\r\n" in answer
    answer = await exchange(fails, request("GET", "/streaming"))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"7\r\npartial\r\n")  # and closed


async def test_a_handler_that_does_not_answer_gets_500():
    async def silent(conn, request):
        pass

    answer = await exchange(silent, request("GET", "/") + request("GET", "/"))
    assert answer.count(b"HTTP/1.1 ") == 1 and answer.startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize("trailers", [(), [("X-T", "t")]], ids=["fast", "h11"])
async def test_a_body_read_twice_is_empty_the_second_time(trailers):
    async def read_twice(conn, request):
        first, _ = await conn.read_body(100)
        second, _ = await conn.read_body(100)
        await conn.respond(200, first + b"|" + second)

    answer = await exchange(read_twice, request("POST", "/", b"abc", trailers=trailers), eof=True)
    [(_, _, body, _)] = responses(answer, [b"POST"])
    assert body == b"abc|"

"""The bootstrap's HTTP/1.1 codec: requests built byte for byte, responses parsed whole, one byte at a
time, and with trailing data (h11's `tr()` discipline)."""

import pytest

from bootstrap.client import LambdaRuntimeClientError, RuntimeClient
from bootstrap.http11 import (ProtocolError, ResponseParser, build_request, build_request_head,
                              encode_chunk, encode_last_chunk)


def test_get_request_bytes():
    assert build_request("GET", "/2018-06-01/runtime/invocation/next",
                         [("Host", "127.0.0.1:9001"), ("Accept", "*/*")]) == (
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
        b"Host: 127.0.0.1:9001\r\nAccept: */*\r\n\r\n")


def test_post_request_bytes_with_length():
    assert build_request("POST", "/x", [("Host", "h")], b"abc") == (
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")


def test_chunk_encoding():
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n"
    assert encode_chunk(b"x" * 300) == b"12c\r\n" + b"x" * 300 + b"\r\n"
    assert encode_chunk(b"") == b""  # never a premature last-chunk
    assert encode_last_chunk() == b"0\r\n\r\n"
    assert encode_last_chunk([("A", "1"), ("B", "two")]) == b"0\r\nA: 1\r\nB: two\r\n\r\n"


def test_head_only_request():
    assert build_request_head("POST", "/y", [("Transfer-Encoding", "chunked")]) == (
        b"POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")


# --- the Runtime API requests, exactly as awslambdaric 4.2.2 sends them (User-Agent aside) ----

def client():
    return RuntimeClient("127.0.0.1:9001", user_agent="UA")


def test_next_request_matches_libcurl_shape():
    assert client().next_request() == (
        b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept: */*\r\nUser-Agent: UA\r\n\r\n")


def test_response_request_bytes():
    assert client().response_request("rid", b'{"a": 1}', "application/json", "inv") == (
        b"POST /2018-06-01/runtime/invocation/rid/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept: */*\r\ncontent-type: application/json\r\nUser-Agent: UA\r\n"
        b"lambda-runtime-invocation-id: inv\r\ncontent-length: 8\r\n\r\n{\"a\": 1}")
    assert b"invocation-id" not in client().response_request("rid", b"", "x", None)


def test_error_request_bytes():
    assert client().error_request("rid", b"{}", '{"c": 1}') == (
        b"POST /2018-06-01/runtime/invocation/rid/error HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept: */*\r\ncontent-type: application/json\r\n"
        b'lambda-runtime-function-xray-error-cause: {"c": 1}\r\nUser-Agent: UA\r\n'
        b"content-length: 2\r\n\r\n{}")
    # An empty cause (too large) leaves the header out, as libcurl does.
    assert b"xray" not in client().error_request("rid", b"{}", "")


def test_init_error_request_matches_http_client_shape():
    assert client().init_error_request(b"{}", "Runtime.ImportModuleError") == (
        b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 2\r\n"
        b"Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError\r\n\r\n{}")


def test_restore_requests():
    assert client().restore_next_request() == (
        b"GET /2018-06-01/runtime/restore/next HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept-Encoding: identity\r\n\r\n")
    assert client().restore_error_request(b"{}") == (
        b"POST /2018-06-01/runtime/restore/error HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 2\r\n"
        b"Lambda-Runtime-Function-Error-Type: Runtime.AfterRestoreError\r\n\r\n{}")


def test_streaming_response_head():
    assert client().streaming_response_head("rid", "text/plain", None) == (
        b"POST /2018-06-01/runtime/invocation/rid/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
        b"Accept: */*\r\ncontent-type: text/plain\r\nUser-Agent: UA\r\n"
        b"Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
        b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n")


def test_port_80_host_header_has_no_port():
    assert b"Host: example\r\n" in RuntimeClient("example:80").init_error_request(b"", "T")


# --- response parsing ------------------------------------------------------------------------

def parse_all(data, eof=False):
    p = ResponseParser()
    p.feed(data)
    if eof:
        p.feed_eof()
    out = []
    while (r := p.next_response()) is not None:
        out.append(r)
    return out


def parse_bytewise(data, eof=False):
    p = ResponseParser()
    out = []
    for i in range(len(data)):
        p.feed(data[i:i + 1])
        while (r := p.next_response()) is not None:
            out.append(r)
    if eof:
        p.feed_eof()
        while (r := p.next_response()) is not None:
            out.append(r)
    return out


def tr(data, expected, eof=False):
    """Whole, byte by byte, and followed by a second response: the same results."""
    for responses in (parse_all(data, eof), parse_bytewise(data, eof)):
        assert [(r.status, r.headers, r.body) for r in responses] == expected
    if not eof:
        follow = b"HTTP/1.1 204 No Content\r\n\r\n"
        responses = parse_all(data + follow)
        assert [(r.status, r.body) for r in responses] == [(s, b) for s, _, b in expected] + [(204, b"")]


NEXT = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Lambda-Runtime-Aws-Request-Id: 8476a536\r\nLambda-Runtime-Deadline-Ms: 1542409706888\r\n"
        b"Content-Length: 13\r\n\r\n{\"hello\": 1}\n")


def test_content_length_body():
    tr(NEXT, [(200, {"content-type": "application/json", "lambda-runtime-aws-request-id": "8476a536",
                     "lambda-runtime-deadline-ms": "1542409706888", "content-length": "13"},
               b'{"hello": 1}\n')])


def test_chunked_body_with_extensions_and_trailers():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n1A\r\n" + b"a" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n")
    tr(data, [(200, {"transfer-encoding": "chunked"}, b"hello" + b"a" * 26)])


def test_large_chunked_event_as_go_sends_it():
    body = bytes(range(256)) * 40
    chunks = b"".join(b"%x\r\n%b\r\n" % (len(body[i:i + 4096]), body[i:i + 4096])
                      for i in range(0, len(body), 4096))
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    assert parse_all(data)[0].body == body
    assert parse_bytewise(data)[0].body == body


def test_no_body_statuses_and_empty_length():
    tr(b"HTTP/1.1 204 No Content\r\nX: y\r\n\r\n", [(204, {"x": "y"}, b"")])
    tr(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", [(202, {"content-length": "0"}, b"")])


def test_interim_100_continue_is_skipped():
    tr(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
       [(202, {"content-length": "2"}, b"ok")])


def test_body_until_close():
    data = b"HTTP/1.1 200 OK\r\n\r\nall of it"
    assert parse_all(data) == []
    responses = parse_all(data, eof=True)
    assert [(r.status, r.body, r.keep_alive) for r in responses] == [(200, b"all of it", False)]
    assert [(r.status, r.body) for r in parse_bytewise(data, eof=True)] == [(200, b"all of it")]


def test_header_names_case_insensitive_and_repeated_joined():
    (r,) = parse_all(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n")
    assert r.headers["x-a"] == "1, 2"


def test_connection_close_and_http10():
    (r,) = parse_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert not r.keep_alive
    (r,) = parse_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert not r.keep_alive
    (r,) = parse_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert r.keep_alive


def test_utf8_header_values():
    (r,) = parse_all("HTTP/1.1 200 OK\r\nLambda-Runtime-Client-Context: {\"a\": \"é\"}\r\n"
                     "Content-Length: 0\r\n\r\n".encode())
    assert r.headers["lambda-runtime-client-context"] == '{"a": "é"}'


@pytest.mark.parametrize("data", [
    b"SMTP nonsense\r\n\r\n",
    b"HTTP/1.1 abc OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
])
def test_malformed_responses_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        parse_all(data)


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
])
def test_truncated_by_eof_raises(data):
    with pytest.raises(ProtocolError):
        parse_all(data, eof=True)


def test_client_error_text_matches_awslambdaric():
    e = LambdaRuntimeClientError("/2018-06-01/runtime/init/error", 403, b'{"x":1}')
    assert str(e) == ("Request to Lambda Runtime '/2018-06-01/runtime/init/error' endpoint failed. "
                      "Reason: '403'. Response body: 'b'{\"x\":1}''")

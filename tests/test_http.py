"""The HTTP layer's fast path, checked against h11 (the reference parser it hands everything else to):
on generated requests, whatever the fast path accepts, h11 reads the same way."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime_api.http1 import parse_simple_head


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


tokens = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                 min_size=1, max_size=12)
values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=30)
header = st.tuples(st.one_of(tokens, st.sampled_from(["Content-Type", "Lambda-Runtime-Function-Error-Type",
                                                      "X-Amz-Log-Type", "Transfer-Encoding", "Expect",
                                                      "Connection", "Host"])), values)


@settings(max_examples=400, deadline=None)
@given(method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "DELETE", "X-CUSTOM"]),
       path=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=40),
       headers=st.lists(header, max_size=6), body=st.binary(max_size=64), host=st.booleans())
def test_what_the_fast_path_takes_h11_reads_the_same(method, path, headers, body, host):
    lines = [f"{method} /{path} HTTP/1.1"]
    if host:
        lines.append("Host: x")
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "content-length"]
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode()
    simple = parse_simple_head(head)
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
    assert parse_simple_head(head) is None


def test_a_runtime_api_request_takes_the_fast_path():
    head = (b"POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\nHost: 127.0.0.1:9001\r\n"
            b"User-Agent: aws-lambda-python/3.11.7-4.2.2\r\nAccept: */*\r\ncontent-type: application/json\r\n"
            b"content-length: 18")
    simple = parse_simple_head(head)
    assert simple.method == "POST" and simple.target == b"/2018-06-01/runtime/invocation/abc/response"
    assert simple.content_length == 18 and (b"content-type", b"application/json") in simple.headers


def test_a_header_line_without_a_colon_goes_to_h11_even_for_a_known_name():
    assert parse_simple_head(b"GET / HTTP/1.1\r\nHost: x\r\nAccept: */*") is not None
    assert parse_simple_head(b"GET / HTTP/1.1\r\nHost: x\r\nAccept") is None

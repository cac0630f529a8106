"""Transport: the Runtime API client. One keep-alive connection over a raw socket (TCP_NODELAY), the
requests built by `bootstrap.http11`'s pure functions, answers parsed by its parser.

The request heads copy what awslambdaric 4.2.2 sends, endpoint by endpoint (its `next`/`response`/
`error` go through libcurl, its init/restore calls through `http.client`), except the User-Agent,
which names this client.
"""

import os
import sys
import _socket

from bootstrap import wire
from bootstrap.http11 import ProtocolError, ResponseParser, build_request, build_request_head

VERSION = "0.1.0"
CONNECT_TIMEOUT_S = 1.0
USER_AGENT = "aws-lambda-python/{}.{}.{}-lambdalet-{}".format(*sys.version_info[:3], VERSION)


class LambdaRuntimeClientError(Exception):
    """A Runtime API call did not get the status it needs (same text as awslambdaric's
    LambdaRuntimeClientError)."""

    def __init__(self, endpoint, status, body):
        self.endpoint = endpoint
        self.response_code = status
        self.response_body = body
        super().__init__(f"Request to Lambda Runtime '{endpoint}' endpoint failed. "
                         f"Reason: '{status}'. Response body: '{body}'")


class Invocation:
    """One event from `GET next`: the payload bytes untouched, plus the `Lambda-Runtime-*` headers."""

    __slots__ = ("request_id", "deadline_ms", "invoked_function_arn", "trace_id", "client_context",
                 "cognito_identity", "tenant_id", "invocation_id", "content_type", "body")

    def __init__(self, headers, body):
        get = headers.get
        self.request_id = get("lambda-runtime-aws-request-id")
        try:
            self.deadline_ms = int(get("lambda-runtime-deadline-ms") or 0)
        except ValueError:
            self.deadline_ms = 0
        self.invoked_function_arn = get("lambda-runtime-invoked-function-arn")
        self.trace_id = get("lambda-runtime-trace-id") or None
        self.client_context = get("lambda-runtime-client-context") or None
        self.cognito_identity = get("lambda-runtime-cognito-identity") or None
        self.tenant_id = get("lambda-runtime-aws-tenant-id") or None
        self.invocation_id = get("lambda-runtime-invocation-id") or None
        # A missing Content-Type is read as JSON (awslambdaric 4.2.2 segfaults on it).
        self.content_type = get("content-type", wire.JSON)
        self.body = body


def split_address(address):
    """'host:port' (host may be a bracketed IPv6 literal) -> (host, port)."""
    host, _, port = address.rpartition(":")
    if not host:
        raise ValueError(f"AWS_LAMBDA_RUNTIME_API must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


class Connection:
    """One HTTP/1.1 connection, opened lazily and reopened when the server closed it. `sock`: one
    already connected, to use until it is closed (a SnapStart template's rehearsal, a test)."""

    def __init__(self, address, sock=None):
        self.address = address
        self.host, self.port = split_address(address)
        # http.client leaves out the default port in its Host header.
        self.host_header = address if self.port != 80 else self.host
        self.sock = sock
        self.parser = ResponseParser() if sock is not None else None
        _CONNECTIONS.append(self)

    def _address(self):
        """(family, sockaddr). Lambda's Runtime API is always an IPv4 literal (127.0.0.1:9001): taken
        as it is, without getaddrinfo, which reads /etc/gai.conf and allocates on its first call (in
        every SnapStart copy). Anything else is resolved; an ASCII host goes in as bytes, since a str
        would be IDNA-encoded, importing encodings.idna at start-up for nothing (its cost:
        benchmarks/results/costs.md)."""
        try:
            _socket.inet_pton(_socket.AF_INET, self.host)
            return _socket.AF_INET, (self.host, self.port)
        except OSError:
            pass
        host = self.host.encode("ascii") if self.host.isascii() else self.host
        family, _, _, _, sockaddr = _socket.getaddrinfo(host, self.port, 0, _socket.SOCK_STREAM)[0]
        return family, sockaddr

    def _connect(self):
        family, sockaddr = self._address()
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            # Connecting may time out (1 s, as awslambdaric's libcurl); waiting for `next` never
            # does: the environment may be frozen in between.
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(sockaddr)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.parser = ResponseParser()

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.parser = None

    def drop_after_fork(self):
        # The child must not share the parent's connection: close our copy of the descriptor (the
        # parent's stays open) and connect afresh on the next request.
        self.close()

    def request(self, data, body_chunks=None):
        """Send one request (`data`, then optionally an iterable of further byte strings written as
        they come) and return the response. A reused connection that turns out to be closed before
        anything was answered is reopened once and the request resent."""
        fresh = self.sock is None
        if fresh:
            self._connect()
        try:
            self.sock.sendall(data)
        except OSError:
            self.close()
            if fresh or body_chunks is not None:
                raise
            self._connect()
            self.sock.sendall(data)
            fresh = True
        if body_chunks is not None:
            for chunk in body_chunks:
                if chunk:
                    self.sock.sendall(chunk)
        try:
            return self._read_response()
        except _StaleConnection:
            self.close()
            if fresh or body_chunks is not None:
                raise ConnectionError("Runtime API closed the connection without answering")
            self._connect()
            self.sock.sendall(data)
            return self._read_response()

    def _read_response(self):
        parser = self.parser
        got_any = False
        while True:
            response = parser.next_response()
            if response is not None:
                if not response.keep_alive:
                    self.close()
                return response
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
                if not got_any:
                    raise _StaleConnection() from None
            if not data:
                if not got_any and parser.idle:
                    raise _StaleConnection()
                parser.feed_eof()
                try:
                    response = parser.next_response()
                finally:
                    self.close()
                if response is None:
                    raise ProtocolError("connection closed before a complete response")
                return response
            got_any = True
            parser.feed(data)


class _StaleConnection(Exception):
    pass


_CONNECTIONS = []


def _after_fork_in_child():
    for connection in _CONNECTIONS:
        connection.drop_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class RuntimeClient:
    """The Runtime API calls a runtime makes, each a pure request build plus one round trip, over
    `connection` (by default one of its own to `address`)."""

    def __init__(self, address, user_agent=USER_AGENT, connection=None):
        self.connection = connection if connection is not None else Connection(address)
        self.address = address
        self.user_agent = user_agent
        host = self.connection.host_header
        # libcurl's header set, as awslambdaric's native client sends it.
        self._curl_head = [("Host", host), ("Accept", "*/*")]
        # http.client's header set (awslambdaric's init/restore calls).
        self._stdlib_head = [("Host", host), ("Accept-Encoding", "identity")]

    # --- requests as values (pure) ---------------------------------------------------------

    def next_request(self):
        return build_request("GET", wire.INVOCATION_NEXT,
                             self._curl_head + [("User-Agent", self.user_agent)])

    def response_request(self, request_id, body, content_type, invocation_id=None):
        headers = self._curl_head + [("content-type", content_type),
                                     ("User-Agent", self.user_agent)]
        if invocation_id:
            headers.append(("lambda-runtime-invocation-id", invocation_id))
        return _with_lower_length(
            "POST", wire.INVOCATION_RESPONSE.format(request_id=request_id), headers, body)

    def error_request(self, request_id, body, xray_cause, invocation_id=None):
        headers = self._curl_head + [("content-type", wire.JSON)]
        if xray_cause:
            headers.append(("lambda-runtime-function-xray-error-cause", xray_cause))
        headers.append(("User-Agent", self.user_agent))
        if invocation_id:
            headers.append(("lambda-runtime-invocation-id", invocation_id))
        return _with_lower_length(
            "POST", wire.INVOCATION_ERROR.format(request_id=request_id), headers, body)

    def streaming_response_head(self, request_id, content_type, invocation_id=None):
        headers = self._curl_head + [
            ("content-type", content_type),
            ("User-Agent", self.user_agent),
            (wire.RESPONSE_MODE, wire.STREAMING),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", f"{wire.FUNCTION_ERROR_TYPE}, {wire.FUNCTION_ERROR_BODY}"),
        ]
        if invocation_id:
            headers.append(("lambda-runtime-invocation-id", invocation_id))
        return build_request_head(
            "POST", wire.INVOCATION_RESPONSE.format(request_id=request_id), headers)

    def init_error_request(self, body, error_type):
        return _stdlib_post(self._stdlib_head, wire.INIT_ERROR, body,
                            [(wire.FUNCTION_ERROR_TYPE, error_type)])

    def restore_next_request(self):
        return build_request("GET", wire.RESTORE_NEXT, self._stdlib_head)

    def restore_error_request(self, body, error_type="Runtime.AfterRestoreError"):
        return _stdlib_post(self._stdlib_head, wire.RESTORE_ERROR, body,
                            [(wire.FUNCTION_ERROR_TYPE, error_type)])

    # --- round trips ----------------------------------------------------------------------

    def next(self):
        """Block until the next event. Raises LambdaRuntimeClientError on a non-2xx answer or one without
        a request id."""
        response = self.connection.request(self.next_request())
        if not 200 <= response.status < 300 or "lambda-runtime-aws-request-id" not in response.headers:
            raise LambdaRuntimeClientError(wire.INVOCATION_NEXT, response.status, response.body)
        return Invocation(response.headers, response.body)

    def post_response(self, request_id, body, content_type, invocation_id=None):
        self._expect(self.response_request(request_id, body, content_type, invocation_id),
                     wire.INVOCATION_RESPONSE.format(request_id=request_id), 202)

    def post_error(self, request_id, body, xray_cause, invocation_id=None):
        self._expect(self.error_request(request_id, body, xray_cause, invocation_id),
                     wire.INVOCATION_ERROR.format(request_id=request_id), 202)

    def post_streaming_response(self, request_id, content_type, chunks, invocation_id=None):
        """POST a chunked streamed response. `chunks` yields encoded chunk bytes, ending with the
        last-chunk (and trailers). The connection is closed afterwards, as the docs ask."""
        try:
            self._expect(self.streaming_response_head(request_id, content_type, invocation_id),
                         wire.INVOCATION_RESPONSE.format(request_id=request_id), 202, chunks)
        finally:
            self.connection.close()

    def post_init_error(self, body, error_type):
        self._expect(self.init_error_request(body, error_type), wire.INIT_ERROR, 202)

    def restore_next(self):
        self._expect(self.restore_next_request(), wire.RESTORE_NEXT, 200)

    def post_restore_error(self, body, error_type="Runtime.AfterRestoreError"):
        self._expect(self.restore_error_request(body, error_type), wire.RESTORE_ERROR, 202)

    def _expect(self, data, endpoint, status, body_chunks=None):
        response = self.connection.request(data, body_chunks)
        if response.status != status:
            raise LambdaRuntimeClientError(endpoint, response.status, response.body)
        return response


def _with_lower_length(method, target, headers, body):
    # libcurl spells the length header in lower case when it comes from the caller, as here.
    return build_request_head(method, target, headers + [("content-length", str(len(body)))]) + body


def _stdlib_post(head, target, body, extra):
    return build_request_head("POST", target, head + [("Content-Length", str(len(body)))] + extra) + body


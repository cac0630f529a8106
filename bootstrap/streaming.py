"""Response streaming for Python handlers (awslambdaric has none).

A handler streams its response by returning an iterator (a generator, typically) of `bytes` or `str`
chunks, or a `StreamingResponse` wrapping one:

    from bootstrap.streaming import StreamingResponse

    def handler(event, context):
        def body():
            yield "first part\\n"
            yield b"second part\\n"
        return StreamingResponse(body(), content_type="text/plain")

For a Lambda Function URL (InvokeMode RESPONSE_STREAM) give `status_code`, `headers` and/or
`cookies`: the response is then sent as `application/vnd.awslambda.http-integration-response`,
a JSON prelude, 8 NUL bytes, then the body.

On the wire: `POST .../response` with `Lambda-Runtime-Function-Response-Mode: streaming`,
`Transfer-Encoding: chunked` and `Trailer: Lambda-Runtime-Function-Error-Type,
Lambda-Runtime-Function-Error-Body`; each chunk is sent as soon as the iterator yields it. If the
iterator raises before its first chunk, the error is reported like any handler error (`/error`);
if it raises later, the stream ends with the two trailers (the error type, and the base64 of the
error JSON) and the error is logged.
"""

from bootstrap import wire
from bootstrap.http11 import encode_chunk, encode_last_chunk

DEFAULT_CONTENT_TYPE = "application/octet-stream"


class StreamingResponse:
    """A streamed response: `body` is bytes, str, or an iterable of bytes/str chunks (other values
    are sent JSON-encoded). `content_type` defaults to application/octet-stream. With
    `status_code`, `headers` or `cookies`, it becomes an HTTP integration response (Function URLs):
    status defaults to 200 and `content_type`, when given, is added as the Content-Type header."""

    __slots__ = ("body", "content_type", "status_code", "headers", "cookies")

    def __init__(self, body, content_type=None, status_code=None, headers=None, cookies=None):
        self.body = body
        self.content_type = content_type
        self.status_code = status_code
        self.headers = headers
        self.cookies = cookies

    @property
    def is_http_integration(self):
        return self.status_code is not None or self.headers is not None or self.cookies is not None

    def prelude(self):
        prelude = {"statusCode": 200 if self.status_code is None else self.status_code}
        headers = dict(self.headers or {})
        if self.content_type is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = self.content_type
        if headers:
            prelude["headers"] = headers
        if self.cookies:
            prelude["cookies"] = list(self.cookies)
        return prelude


def is_stream(result):
    """Does this handler result ask for a streamed response?"""
    return isinstance(result, StreamingResponse) or (
        hasattr(type(result), "__next__") and not isinstance(result, (str, bytes, bytearray)))


def to_bytes(chunk, encoder):
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode("utf-8")
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    return encoder.encode(chunk).encode("utf-8")


class PreparedStream:
    """A stream whose first chunk has been produced (so a failure before any byte still goes to
    `/error`): its content type, the first bytes to send, and the iterator for the rest."""

    __slots__ = ("content_type", "first", "rest")

    def __init__(self, content_type, first, rest):
        self.content_type = content_type
        self.first = first
        self.rest = rest


def prepare(result, encoder):
    """Turn a streaming result into a PreparedStream, pulling the first chunk (exceptions from the
    user's iterator propagate)."""
    if isinstance(result, StreamingResponse):
        body = result.body
        if result.is_http_integration:
            content_type = wire.HTTP_INTEGRATION_RESPONSE
            head = (encoder.encode(result.prelude()).encode("utf-8")
                    + wire.HTTP_INTEGRATION_SEPARATOR)
        else:
            content_type = result.content_type or DEFAULT_CONTENT_TYPE
            head = b""
    else:
        body, content_type, head = result, DEFAULT_CONTENT_TYPE, b""
    if isinstance(body, (bytes, str, bytearray, memoryview)) or body is None:
        chunks = iter(() if body is None else (body,))
    else:
        chunks = iter(body)
    first = b""
    for chunk in chunks:
        first = to_bytes(chunk, encoder)
        if first:
            break
    return PreparedStream(content_type, head + first, chunks)


def wire_chunks(stream, encoder, on_error):
    """The chunked body of a PreparedStream as byte strings: each chunk as it comes, then the last
    chunk; if the iterator raises, `on_error(exc)` returns (error_type, error_body_base64) for the
    trailers."""
    if stream.first:
        yield encode_chunk(stream.first)
    try:
        for chunk in stream.rest:
            data = to_bytes(chunk, encoder)
            if data:
                yield encode_chunk(data)
    except Exception as exc:
        error_type, error_body = on_error(exc)
        yield encode_last_chunk([(wire.FUNCTION_ERROR_TYPE, error_type),
                                 (wire.FUNCTION_ERROR_BODY, error_body)])
        return
    yield encode_last_chunk()

"""The invocation loop driven in-process against a scripted Runtime API (R7: client and config are
parameters): what gets posted, with which headers, for each kind of outcome; the transport's
keep-alive, chunked events, fork safety; response streaming on the wire."""

import base64
import json
import os
import threading

import pytest

from bootstrap import logs as logs_module
from bootstrap.client import RuntimeClient
from bootstrap.config import Config
from bootstrap.context import FunctionInfo
from bootstrap.runtime import InitialisedRuntime
from bootstrap.streaming import StreamingResponse
from bootstrap_handlers.fake_api import FakeRuntimeAPI


class ListSink:
    framed = False

    def __init__(self):
        self.records = []
        self.errors = []

    def log(self, msg, frame_type=None):
        self.records.append(msg)

    def log_error(self, lines):
        self.errors.append(lines)


@pytest.fixture
def api():
    with FakeRuntimeAPI() as server:
        yield server


def make_runtime(api, handler, **config):
    cfg = Config(handler="app.handler", runtime_api=api.address,
                 function=FunctionInfo("fn", "$LATEST", "128", "/aws/lambda/fn", "stream"), **config)
    sink = ListSink()
    runtime_logs = logs_module.Logs("text", "", sink)
    runtime = InitialisedRuntime(RuntimeClient(api.address, user_agent="UA"), cfg, runtime_logs,
                                 handler)
    return runtime, sink


def invoke(runtime, api, n=1):
    for _ in range(n):
        runtime.handle(runtime.client.next())
    return api.posts()


def test_success_posts_json_with_invocation_id(api):
    api.add_event(b'{"x": 1}', "rid-1", headers={"Lambda-Runtime-Invocation-Id": "inv-9"})
    runtime, _ = make_runtime(api, lambda e, c: {"got": e, "id": c.aws_request_id})
    (post,) = invoke(runtime, api)
    assert post.path == "/2018-06-01/runtime/invocation/rid-1/response"
    assert post.body == b'{"got": {"x": 1}, "id": "rid-1"}'
    assert post.headers == [("Host", api.address), ("Accept", "*/*"),
                            ("content-type", "application/json"), ("User-Agent", "UA"),
                            ("lambda-runtime-invocation-id", "inv-9"),
                            ("content-length", str(len(post.body)))]


def test_error_body_xray_cause_and_log(api):
    def handler(event, context):
        raise ValueError("bad value: 5")

    api.add_event(b"{}", "rid-2")
    runtime, sink = make_runtime(api, handler)
    (post,) = invoke(runtime, api)
    assert post.path == "/2018-06-01/runtime/invocation/rid-2/error"
    body = json.loads(post.body)
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorType"] == "ValueError" and body["requestId"] == "rid-2"
    assert len(body["stackTrace"]) == 1  # our own frames are trimmed: the handler's frame first
    assert body["stackTrace"][0].startswith(f'  File "{__file__}", line ')
    assert body["stackTrace"][0].endswith(', in handler\n    raise ValueError("bad value: 5")\n')
    assert post.header("Lambda-Runtime-Function-Error-Type") is None  # as awslambdaric
    cause = json.loads(post.header("lambda-runtime-function-xray-error-cause"))
    assert cause["working_directory"] == os.getcwd()
    assert cause["exceptions"][0]["type"] == "ValueError"
    assert cause["exceptions"][0]["stack"][0]["label"] == "handler"
    assert cause["paths"] == [__file__]
    lines = sink.errors[0]
    assert lines[0] == "[ERROR] ValueError: bad value: 5"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[2].startswith("\u00a0\u00a0File ")


def test_nested_exception_reports_only_the_outer_one(api):
    def handler(event, context):
        try:
            {}["k"]
        except KeyError as e:
            raise RuntimeError("outer") from e

    api.add_event()
    runtime, _ = make_runtime(api, handler)
    body = json.loads(invoke(runtime, api)[0].body)
    assert (body["errorType"], body["errorMessage"]) == ("RuntimeError", "outer")
    assert "KeyError" not in json.dumps(body)


def test_marshal_error(api):
    api.add_event()
    runtime, _ = make_runtime(api, lambda e, c: {"s": {1}})
    post = invoke(runtime, api)[0]
    assert json.loads(post.body) == {
        "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
        "errorType": "Runtime.MarshalError", "requestId": "req-1", "stackTrace": []}
    cause = json.loads(post.header("lambda-runtime-function-xray-error-cause"))
    assert cause["exceptions"] == [{"message": json.loads(post.body)["errorMessage"],
                                    "type": "LambdaValidationError", "stack": []}]
    assert cause["paths"] == []


def test_bad_client_context_is_context_unmarshal_error(api):
    api.add_event(headers={"Lambda-Runtime-Client-Context": "not json"})
    runtime, _ = make_runtime(api, lambda e, c: None)
    body = json.loads(invoke(runtime, api)[0].body)
    assert body["errorType"] == "Runtime.LambdaContextUnmarshalError"
    assert body["errorMessage"] == ("Unable to parse Client Context JSON: Expecting value: "
                                    "line 1 column 1 (char 0)")


def test_context_from_headers(api):
    seen = {}

    def handler(event, context):
        seen["ctx"] = context
        seen["remaining"] = context.get_remaining_time_in_millis()
        return None

    api.add_event(headers={
        "Lambda-Runtime-Client-Context": json.dumps({"custom": {"a": 1}, "env": {"e": 2},
                                                     "client": {"app_title": "t"},
                                                     "w3c": {"traceparent": "00-x", "x": "y"}}),
        "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id",
                                                       "cognitoIdentityPoolId": "pool"}),
        "Lambda-Runtime-Aws-Tenant-Id": "tenant"})
    runtime, _ = make_runtime(api, handler)
    assert invoke(runtime, api)[0].body == b"null"
    ctx = seen["ctx"]
    assert ctx.client_context.custom == {"a": 1} and ctx.client_context.env == {"e": 2}
    assert ctx.client_context.client.app_title == "t"
    assert ctx.client_context.client.installation_id is None
    assert ctx.w3c() == {"traceparent": "00-x"}
    assert (ctx.identity.cognito_identity_id, ctx.identity.cognito_identity_pool_id) == ("id", "pool")
    assert ctx.tenant_id == "tenant"
    assert (ctx.function_name, ctx.memory_limit_in_mb, ctx.function_version) == ("fn", "128", "$LATEST")
    assert ctx.invoked_function_arn.endswith(":function:test_function")
    assert seen["remaining"] > 0


def test_trace_id_set_overwritten_and_removed(api):
    seen = []
    api.add_event(headers={"Lambda-Runtime-Trace-Id": "Root=1-abc"})
    api.add_event(request_id="req-2", headers={"Lambda-Runtime-Trace-Id": "Root=1-def"})
    api.add_event(request_id="req-3")
    api.add_event(request_id="req-4", headers={"Lambda-Runtime-Trace-Id": ""})
    runtime, _ = make_runtime(api, lambda e, c: seen.append(os.environ.get("_X_AMZN_TRACE_ID")))
    invoke(runtime, api, 4)
    assert seen == ["Root=1-abc", "Root=1-def", None, None]


@pytest.mark.parametrize("size, sent", [(1024 * 1024 - 200, True), (1024 * 1024, False)])
def test_xray_cause_of_a_mebibyte_or_more_is_left_out(api, size, sent):
    runtime, _ = make_runtime(api, None)
    # Size the message so that the cause's JSON is `size` bytes.
    base = len(runtime.encoder.encode(
        __import__("bootstrap.errors").errors.xray_cause("ValueError", "", [])))

    def handler(event, context):
        raise ValueError("m" * (size - base))

    runtime.handler = handler
    api.add_event()
    (post,) = invoke(runtime, api)
    cause = post.header("lambda-runtime-function-xray-error-cause")
    assert (cause is not None) == sent
    assert json.loads(post.body)["errorMessage"] == "m" * (size - base)


def test_next_without_content_type_is_read_as_json(api):
    # awslambdaric 4.2.2 segfaults here; we treat the body as JSON.
    api.add_event(b'{"a": 1}', content_type=None)
    runtime, _ = make_runtime(api, lambda e, c: e)
    assert invoke(runtime, api)[0].body == b'{"a": 1}'


def test_binary_event_and_bytes_result(api):
    api.add_event(b"\x89PNG", content_type="image/png")
    runtime, _ = make_runtime(api, lambda e, c: e)
    post = invoke(runtime, api)[0]
    assert (post.body, post.header("content-type")) == (b"\x89PNG", "application/unknown")


def test_large_chunked_event_and_result(api):
    big = json.dumps({"data": "x" * 10000}).encode()
    api.add_event(big)
    runtime, _ = make_runtime(api, lambda e, c: e)
    assert invoke(runtime, api)[0].body == big


def test_unusable_next_answers_are_retried(api):
    api.add_event(raw_response=b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    api.add_event(raw_response=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")  # no request id
    api.add_event(b"[1]", "rid-ok")
    runtime, _ = make_runtime(api, lambda e, c: e)
    runtime.handle(runtime.next_invocation())
    assert [p.path for p in api.posts()] == ["/2018-06-01/runtime/invocation/rid-ok/response"]


def test_one_keep_alive_connection_for_many_invocations(api):
    for i in range(5):
        api.add_event(b"{}", f"r{i}")
    runtime, _ = make_runtime(api, lambda e, c: 1)
    invoke(runtime, api, 5)
    assert api.accepted_connections == 1


def test_reconnects_when_the_server_closed_the_connection(api):
    api.add_event(b"{}", "r1")
    runtime, _ = make_runtime(api, lambda e, c: 1)
    invoke(runtime, api, 1)
    for conn in api.connections:  # the server drops the idle keep-alive connection
        conn.shutdown(2)
    api.add_event(b"{}", "r2")
    invoke(runtime, api, 1)
    assert [p.path.split("/")[-2] for p in api.posts()] == ["r1", "r2"]
    assert api.accepted_connections == 2


def test_forked_child_opens_its_own_connection(api):
    api.add_event(b"{}", "parent")
    runtime, _ = make_runtime(api, lambda e, c: os.getpid())
    invoke(runtime, api, 1)
    api.add_event(b"{}", "child")
    pid = os.fork()
    if pid == 0:  # child: one invocation on a fresh connection, then leave at once
        try:
            runtime.handle(runtime.client.next())
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert api.accepted_connections == 2
    posts = api.posts()
    assert int(posts[1].body) == pid
    # The parent's connection still works.
    api.add_event(b"{}", "parent-again")
    invoke(runtime, api, 1)
    assert api.accepted_connections == 2


# --- response streaming --------------------------------------------------------------------------

def test_generator_result_is_streamed_chunked(api):
    def handler(event, context):
        yield "part1-"
        yield b"part2-"
        yield {"part": 3}

    api.add_event()
    runtime, _ = make_runtime(api, handler)
    (post,) = invoke(runtime, api)
    assert post.path == "/2018-06-01/runtime/invocation/req-1/response"
    assert post.header("Lambda-Runtime-Function-Response-Mode") == "streaming"
    assert post.header("Transfer-Encoding") == "chunked"
    assert post.header("Trailer") == ("Lambda-Runtime-Function-Error-Type, "
                                      "Lambda-Runtime-Function-Error-Body")
    assert post.header("content-type") == "application/octet-stream"
    assert post.header("content-length") is None
    assert post.chunks == [b"part1-", b"part2-", b'{"part": 3}']
    assert post.trailers == []


def test_error_mid_stream_ends_with_trailers(api):
    def handler(event, context):
        yield b"partial"
        raise ValueError("mid-stream")

    api.add_event()
    runtime, sink = make_runtime(api, handler)
    (post,) = invoke(runtime, api)
    assert post.chunks == [b"partial"]
    trailers = dict(post.trailers)
    assert trailers["Lambda-Runtime-Function-Error-Type"] == "ValueError"
    error = json.loads(base64.b64decode(trailers["Lambda-Runtime-Function-Error-Body"]))
    assert (error["errorType"], error["errorMessage"], error["requestId"]) == (
        "ValueError", "mid-stream", "req-1")
    assert sink.errors[0][0] == "[ERROR] ValueError: mid-stream"


def test_error_before_first_chunk_goes_to_error_endpoint(api):
    def handler(event, context):
        raise KeyError("early")
        yield b"never"

    api.add_event()
    runtime, _ = make_runtime(api, handler)
    (post,) = invoke(runtime, api)
    assert post.path.endswith("/error")
    assert json.loads(post.body)["errorType"] == "KeyError"


def test_http_integration_prelude(api):
    api.add_event()
    body = iter([b"<h1>hi</h1>"])
    runtime, _ = make_runtime(api, lambda e, c: StreamingResponse(
        body, content_type="text/html", status_code=201, headers={"X-A": "1"}, cookies=["a=b"]))
    (post,) = invoke(runtime, api)
    assert post.header("content-type") == "application/vnd.awslambda.http-integration-response"
    prelude, _, rest = post.body.partition(b"\x00" * 8)
    assert json.loads(prelude) == {"statusCode": 201,
                                   "headers": {"X-A": "1", "Content-Type": "text/html"},
                                   "cookies": ["a=b"]}
    assert rest == b"<h1>hi</h1>"


def test_streaming_response_plain_content_type(api):
    api.add_event()
    runtime, _ = make_runtime(api, lambda e, c: StreamingResponse(["a", "b"],
                                                                  content_type="text/plain"))
    (post,) = invoke(runtime, api)
    assert (post.header("content-type"), post.body) == ("text/plain", b"ab")


def test_stream_chunks_are_sent_before_the_handler_finishes(api):
    release = threading.Event()

    def handler(event, context):
        yield b"early"
        assert release.wait(30)
        yield b"late"

    api.add_event()
    runtime, _ = make_runtime(api, handler)
    worker = threading.Thread(target=invoke, args=(runtime, api))
    worker.start()
    try:
        assert api.chunk_seen.wait(30)  # the first chunk arrived while the generator is paused
        assert api.posts() == []  # ... and the request is still open
    finally:
        release.set()
        worker.join(30)
    assert api.posts()[0].chunks == [b"early", b"late"]


# --- SnapStart templates (fork) --------------------------------------------------------------------

def test_snapshot_template_restored_twice_by_fork(api):
    """A template (before-snapshot hooks done) forked twice: each child calls restore/next, runs the
    after-restore hooks and serves on a connection of its own; the request id state starts empty."""
    import snapshot_restore_py as hooks

    read_fd, write_fd = os.pipe()
    seen = []
    hooks.register_before_snapshot(lambda: seen.append("before"))
    hooks.register_after_restore(lambda: os.write(write_fd, b"after %d\n" % os.getpid()))
    try:
        api.add_event(b"{}", "in-parent")
        runtime, _ = make_runtime(api, lambda e, c: [os.getpid(), logs_module.request_id])
        invoke(runtime, api, 1)  # the parent holds an open connection when it forks
        template = runtime.prepare_snapshot()
        assert seen == ["before"] and hooks.get_before_snapshot() == []
        children = []
        for i in range(2):
            api.add_event(b"{}", f"child-{i}")
            pid = os.fork()
            if pid == 0:
                try:
                    restored = template.restore()
                    restored.handle(restored.client.next())
                finally:
                    os._exit(0)
            assert os.waitpid(pid, 0)[1] == 0
            children.append(pid)
    finally:
        hooks.get_after_restore().clear()
        hooks.get_before_snapshot().clear()
        os.close(write_fd)
    with os.fdopen(read_fd) as f:
        assert f.read() == "".join(f"after {pid}\n" for pid in children)
    paths = [r.path for r in api.requests]
    assert paths.count("/2018-06-01/runtime/restore/next") == 2
    bodies = [json.loads(p.body) for p in api.posts()]
    assert bodies == [[os.getpid(), "in-parent"], [children[0], "child-0"], [children[1], "child-1"]]
    assert api.accepted_connections == 3

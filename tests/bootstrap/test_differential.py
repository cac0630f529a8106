"""awslambdaric 4.2.2 and our bootstrap, side by side, against the same scripted Runtime API: each
scenario queues the same events, runs each runtime as a child process, and compares everything the
runtime did that anyone can observe: every request it made (method, path, headers in order, body),
what it printed, and how it exited.

Deliberate differences are named tests (`test_difference_*`) with their reason."""

import base64
import json

import pytest

from bootstrap_handlers.fake_api import FakeRuntimeAPI
from bootstrap_handlers.runners import base_env, normalise_request, normalise_text, run_against, task_dir


# Equal-length directory names, so lengths (Content-Length) of bodies naming paths compare equal.
DIRS = {"awslambdaric": "aws", "bootstrap": "our"}


def settled(requests, n):
    """n events answered and the runtime back in `next` (so both runtimes made the same calls)."""
    posts = sum(r.method == "POST" for r in requests)
    nexts = sum(r.path.endswith("/invocation/next") for r in requests)
    return posts >= n and nexts > n


def run_both(tmp_path, handler, events=(), env=None, until=None):
    """Run awslambdaric and ours for one scenario; returns {kind: Finished}."""
    results = {}
    for kind in ("awslambdaric", "bootstrap"):
        cwd = task_dir(tmp_path / DIRS[kind])
        with FakeRuntimeAPI() as api:
            for event in events:
                api.add_event(**event)
            n_events = len(events)
            stop = until or (lambda requests, n=n_events: n > 0 and settled(requests, n))
            results[kind] = run_against(api, kind, handler, cwd, base_env(**(env or {})), stop)
    return results


def requests_of(result, tmp_path, kind):
    out = []
    for r in result.requests:
        n = normalise_request(r)
        n["headers"] = [(k, v) for k, v in n["headers"] if k.lower() != "host"]
        n["body"] = n["body"].replace(str(tmp_path / DIRS[kind]).encode(), b"<TASK>")
        for i, (k, v) in enumerate(n["headers"]):
            if isinstance(v, dict):
                n["headers"][i] = (k, json.loads(json.dumps(v).replace(str(tmp_path / DIRS[kind]), "<TASK>")))
        out.append(n)
    return out


def output_of(result, tmp_path, kind):
    return normalise_text(result.stdout).replace(str(tmp_path / DIRS[kind]), "<TASK>")


def assert_same(tmp_path, results, compare_output=True):
    ours, theirs = results["bootstrap"], results["awslambdaric"]
    assert requests_of(ours, tmp_path, "bootstrap") == requests_of(theirs, tmp_path, "awslambdaric")
    if compare_output:
        assert output_of(ours, tmp_path, "bootstrap") == output_of(theirs, tmp_path, "awslambdaric")
    assert ours.returncode == theirs.returncode


SUCCESS_HANDLERS = ["echo", "ret_list", "ret_str", "ret_int", "ret_float", "ret_none", "ret_decimal",
                    "ret_bytes", "ret_non_ascii", "ret_big"]


@pytest.mark.parametrize("handler", SUCCESS_HANDLERS)
def test_success_results(tmp_path, handler):
    events = [dict(body=b'{"hello": "w\\u00f6rld", "n": [1, 2.5, null]}', request_id="rid-1"),
              dict(body=b'{"second": true}', request_id="rid-2",
                   headers={"Lambda-Runtime-Invocation-Id": "inv-2"})]
    assert_same(tmp_path, run_both(tmp_path, f"app.{handler}", events))


@pytest.mark.parametrize("handler", ["raise_value", "raise_custom_empty", "raise_nested",
                                     "unserialisable", "import_inside", "huge_error"])
def test_invocation_errors(tmp_path, handler):
    events = [dict(body=b'{"x": 5}', request_id="rid-err")]
    assert_same(tmp_path, run_both(tmp_path, f"app.{handler}", events))


@pytest.mark.parametrize("handler", [
    "nodot",                       # Runtime.MalformedHandlerName
    "sys.handler",                 # Runtime.BuiltInModuleConflict
    "does_not_exist.handler",      # Runtime.ImportModuleError (module missing)
    "bad_import.handler",          # Runtime.ImportModuleError (dependency missing)
    "bad_syntax.handler",          # Runtime.UserCodeSyntaxError
    "app.nope",                    # Runtime.HandlerNotFound
    "raise_at_import.handler",     # the exception's class name, importlib frames kept
])
def test_init_errors(tmp_path, handler):
    results = run_both(tmp_path, handler, until=lambda requests: False)
    assert results["bootstrap"].returncode == 1
    assert_same(tmp_path, results)
    (post,) = results["bootstrap"].requests
    assert post.path == "/2018-06-01/runtime/init/error"


@pytest.mark.parametrize("handler", ["sub/mod.handler", "sub.mod.handler"])
def test_slash_and_dotted_module_paths(tmp_path, handler):
    assert_same(tmp_path, run_both(tmp_path, handler, [dict(body=b"{}")]))


@pytest.mark.parametrize("event", [
    dict(body=b"", request_id="empty"),                                  # UnmarshalError
    dict(body=b'{"a": 1}x', request_id="extra"),                         # simplejson's "Extra data"
    dict(body=b"NaN", request_id="nan"),
    dict(body=b"\x89PNG\r\n", request_id="png", content_type="image/png"),  # bytes to the handler
    dict(body=b'{"a": 1}', request_id="charset", content_type="application/json; charset=utf-8"),
    dict(body=json.dumps({"big": "z" * 6000}).encode(), request_id="chunked"),  # > 2 KB, chunked
])
def test_event_decoding(tmp_path, event):
    assert_same(tmp_path, run_both(tmp_path, "app.echo", [event]))


def test_client_context_cognito_tenant_trace(tmp_path):
    headers = {
        "Lambda-Runtime-Client-Context": json.dumps({
            "custom": {"foo": "bar"}, "env": {"platform": "x"},
            "client": {"installation_id": "i", "app_title": "t", "app_version_name": "n",
                       "app_version_code": "c", "app_package_name": "p"},
            "w3c": {"traceparent": "00-abc-def-01", "baggage": 3}}),
        "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "cid",
                                                       "cognitoIdentityPoolId": "pool"}),
        "Lambda-Runtime-Aws-Tenant-Id": "tenant-7",
        "Lambda-Runtime-Trace-Id": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
    }
    assert_same(tmp_path, run_both(tmp_path, "app.context_info",
                                   [dict(body=b"{}", headers=headers), dict(body=b"{}")]))


@pytest.mark.parametrize("header", ["Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity"])
def test_bad_context_json(tmp_path, header):
    assert_same(tmp_path, run_both(tmp_path, "app.context_info",
                                   [dict(body=b"{}", headers={header: "{not json"})]))


@pytest.mark.parametrize("env", [
    {},
    {"AWS_LAMBDA_LOG_FORMAT": "JSON"},
    {"AWS_LAMBDA_LOG_LEVEL": "INFO"},
    {"AWS_LAMBDA_LOG_FORMAT": "json", "AWS_LAMBDA_LOG_LEVEL": "TRACE"},
    {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.12"},
])
def test_log_lines(tmp_path, env):
    events = [dict(body=b"{}", request_id="rid-log", headers={"Lambda-Runtime-Aws-Tenant-Id": "t1"})]
    results = run_both(tmp_path, "app.log_lines", events, env=env)
    assert_same(tmp_path, results)
    out = output_of(results["bootstrap"], tmp_path, "bootstrap")
    assert "printed line" in out and "context.log line" in out


@pytest.mark.parametrize("env", [{}, {"AWS_LAMBDA_LOG_FORMAT": "JSON"}])
def test_errors_logged_in_each_format(tmp_path, env):
    assert_same(tmp_path, run_both(tmp_path, "app.raise_nested", [dict(body=b"{}")], env=env))


def test_logging_configured_before_handler_import(tmp_path):
    # The root handler exists when the handler module's top level runs (here: lazily installed by
    # our import hook the moment the module imports logging).
    results = run_both(tmp_path, "uses_logging_at_import.handler", [dict(body=b"{}")])
    assert_same(tmp_path, results, compare_output=False)
    assert (output_of(results["bootstrap"], tmp_path, "bootstrap")
            == output_of(results["awslambdaric"], tmp_path, "awslambdaric"))


def test_sys_exit_in_handler_ends_the_process(tmp_path):
    results = run_both(tmp_path, "app.exit3", [dict(body=b"{}")], until=lambda r: False)
    assert results["bootstrap"].returncode == 3
    assert_same(tmp_path, results)


def test_multiple_invocations_then_error_then_success(tmp_path):
    events = [dict(body=b'{"x": 1}', request_id="a"), dict(body=b"not json", request_id="b"),
              dict(body=b'{"x": 3}', request_id="c")]
    assert_same(tmp_path, run_both(tmp_path, "app.echo", events))


# --- SnapStart -----------------------------------------------------------------------------------

def snap_until(requests):
    return settled(requests, 1)


def test_snapstart_hooks_in_order(tmp_path):
    results = run_both(tmp_path, "snap.handler", [dict(body=b"{}")],
                       env={"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}, until=snap_until)
    assert_same(tmp_path, results)
    out = output_of(results["bootstrap"], tmp_path, "bootstrap")
    assert out.split("\n")[1:6] == ["before-2 arg kw", "before-1", "after-1", "after-2", ""] or \
        out.split("\n")[:4] == ["before-2 arg kw", "before-1", "after-1", "after-2"]
    paths = [r.path for r in results["bootstrap"].requests]
    assert paths[:2] == ["/2018-06-01/runtime/restore/next", "/2018-06-01/runtime/invocation/next"]


def test_snapstart_not_run_on_demand(tmp_path):
    results = run_both(tmp_path, "snap.handler", [dict(body=b"{}")],
                       env={"AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"})
    assert_same(tmp_path, results)
    assert "before" not in output_of(results["bootstrap"], tmp_path, "bootstrap")


def _without_hook_runner_frames(results, tmp_path):
    """awslambdaric's hook failures carry a frame of its own hook runner
    (awslambdaric/lambda_runtime_hooks_runner.py); ours start at the user's hook. Everything else
    must match."""
    normalised = {}
    for kind, result in results.items():
        reqs = requests_of(result, tmp_path, kind)
        for r in reqs:
            if r["method"] == "POST":
                body = json.loads(r["body"])
                body["stackTrace"] = [f for f in body["stackTrace"] if "awslambdaric" not in f]
                r["body"] = body
                r["headers"] = [(k, v) for k, v in r["headers"] if k.lower() != "content-length"]
        out = [line for line in output_of(result, tmp_path, kind).split("\n")]
        out = ["\r".join(p for p in line.split("\r") if "awslambdaric" not in p
                         and "func(*args, **kwargs)" not in p) for line in out]
        normalised[kind] = (reqs, out, result.returncode)
    return normalised


@pytest.mark.parametrize("failure, status, endpoint", [
    ("before", 64, "/2018-06-01/runtime/init/error"),
    ("after", 65, "/2018-06-01/runtime/restore/error"),
])
def test_difference_snapstart_hook_failure_trace_starts_at_user_hook(tmp_path, failure, status,
                                                                       endpoint):
    """Deliberate difference: awslambdaric's stackTrace for a failing hook includes a frame of its
    own hook runner module; ours starts at the user's hook (our frames are all trimmed). Types,
    messages, headers, exit codes and the order of calls are the same."""
    results = run_both(tmp_path, "snap.handler", [dict(body=b"{}")],
                       env={"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "SNAP_FAIL": failure},
                       until=lambda r: False)
    normalised = _without_hook_runner_frames(results, tmp_path)
    assert normalised["bootstrap"] == normalised["awslambdaric"]
    assert results["bootstrap"].returncode == status
    post = [r for r in results["bootstrap"].requests if r.method == "POST"][0]
    assert post.path == endpoint


def test_snapstart_restore_next_refused_exits_64(tmp_path):
    results = {}
    for kind in ("awslambdaric", "bootstrap"):
        with FakeRuntimeAPI(restore_status=404) as api:
            results[kind] = run_against(api, kind, "snap.handler", task_dir(tmp_path / DIRS[kind]),
                                        base_env(AWS_LAMBDA_INITIALIZATION_TYPE="snap-start"),
                                        lambda r: False)
    normalised = _without_hook_runner_frames(results, tmp_path)
    # The client error's frames are the runtimes' own, so only type and message are compared.
    bodies = {k: [r["body"] for r in v[0] if r["method"] == "POST"][0] for k, v in normalised.items()}
    for body in bodies.values():
        body.pop("stackTrace")
    assert bodies["bootstrap"] == bodies["awslambdaric"]
    assert bodies["bootstrap"]["errorType"] == "LambdaRuntimeClientError"
    assert results["bootstrap"].returncode == results["awslambdaric"].returncode == 64


# --- deliberate differences ------------------------------------------------------------------------

def test_difference_user_agent_names_lambdalet(tmp_path):
    """Deliberate difference: the User-Agent says which client is talking
    (aws-lambda-python/<python>-lambdalet-<version> instead of ...-4.2.2)."""
    results = run_both(tmp_path, "app.echo", [dict(body=b"{}")])
    ua = {k: dict(results[k].requests[0].headers)["User-Agent"] for k in results}
    assert ua["awslambdaric"].endswith("-4.2.2")
    assert ua["bootstrap"].startswith("aws-lambda-python/") and "-lambdalet-" in ua["bootstrap"]


def test_difference_generator_results_stream(tmp_path):
    """Deliberate difference (issue item 6): a generator result is a Runtime.MarshalError for
    awslambdaric; we stream it."""
    with FakeRuntimeAPI() as api:
        api.add_event()
        cwd = task_dir(tmp_path)
        (cwd / "gen.py").write_text("def handler(e, c):\n    yield 'a'\n    yield b'b'\n")
        result = run_against(api, "bootstrap", "gen.handler", cwd, base_env(),
                             lambda r: any(x.method == "POST" for x in r))
    post = [r for r in result.requests if r.method == "POST"][0]
    assert post.chunks == [b"a", b"b"]
    assert dict(post.headers)["Lambda-Runtime-Function-Response-Mode"] == "streaming"


def test_difference_handler_from_environment(tmp_path):
    """Deliberate difference: awslambdaric needs the handler in argv; we also read _HANDLER, as
    a provided.al2023 bootstrap must."""
    with FakeRuntimeAPI() as api:
        api.add_event(b'"x"')
        result = run_against(api, "bootstrap", None, task_dir(tmp_path),
                             base_env(_HANDLER="app.echo"),
                             lambda r: any(x.method == "POST" for x in r))
    assert [r.body for r in result.requests if r.method == "POST"] == [b'"x"']


def test_difference_missing_content_type_does_not_crash(tmp_path):
    """Deliberate difference: awslambdaric 4.2.2 segfaults on a `next` without Content-Type; we
    read the body as JSON."""
    with FakeRuntimeAPI() as api:
        api.add_event(b'{"k": 1}', content_type=None)
        result = run_against(api, "bootstrap", "app.echo", task_dir(tmp_path), base_env(),
                             lambda r: any(x.method == "POST" for x in r))
    assert [r.body for r in result.requests if r.method == "POST"] == [b'{"k": 1}']


def test_telemetry_fd_frames_match(tmp_path):
    """With _LAMBDA_TELEMETRY_LOG_FD both runtimes write the same frames (types and payloads)."""
    import os
    import subprocess

    frames = {}
    for kind in ("awslambdaric", "bootstrap"):
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, True)
        with FakeRuntimeAPI() as api:
            api.add_event(b"{}", "rid-fd")
            api.add_event(b"{}", "rid-fd2")
            env = base_env(_LAMBDA_TELEMETRY_LOG_FD=str(write_fd), AWS_LAMBDA_LOG_LEVEL="DEBUG")
            cwd = task_dir(tmp_path / DIRS[kind])
            argv_env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address)
            from bootstrap_handlers.runners import RUNTIMES, kill_group
            proc = subprocess.Popen(RUNTIMES[kind] + ["app.log_lines"], cwd=cwd, env=argv_env,
                                    pass_fds=(write_fd,), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            os.close(write_fd)
            try:
                api.wait_for(lambda r: sum(x.method == "POST" for x in r) >= 2)
            finally:
                kill_group(proc)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        frames[kind] = decode_frames(data, tmp_path / DIRS[kind])
    assert frames["bootstrap"] == frames["awslambdaric"]
    assert {t for t, _ in frames["bootstrap"]} >= {0xA55A0013, 0xA55A0017, 0xA55A001B, 0xA55A0003}


def decode_frames(data, task):
    import re
    out = []
    while data:
        ftype = int.from_bytes(data[:4], "big")
        length = int.from_bytes(data[4:8], "big")
        payload = data[16:16 + length].decode()
        payload = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", "<TS>", payload)
        out.append((ftype, payload.replace(str(task), "<TASK>")))
        data = data[16 + length:]
    return out


def test_streamed_error_body_is_base64_json(tmp_path):
    with FakeRuntimeAPI() as api:
        api.add_event()
        cwd = task_dir(tmp_path)
        (cwd / "gen.py").write_text(
            "def handler(e, c):\n    yield 'a'\n    raise ValueError('mid')\n")
        result = run_against(api, "bootstrap", "gen.handler", cwd, base_env(),
                             lambda r: any(x.method == "POST" for x in r))
    post = [r for r in result.requests if r.method == "POST"][0]
    trailers = dict(post.trailers)
    body = json.loads(base64.b64decode(trailers["Lambda-Runtime-Function-Error-Body"]))
    assert body["errorType"] == trailers["Lambda-Runtime-Function-Error-Type"] == "ValueError"


@pytest.mark.parametrize("env", [{}, {"AWS_LAMBDA_LOG_FORMAT": "JSON"}])
def test_logging_first_imported_during_an_invocation(tmp_path, env):
    results = run_both(tmp_path, "late_logging.handler",
                       [dict(body=b"{}", request_id="r1"), dict(body=b"{}", request_id="r2")], env=env)
    assert_same(tmp_path, results)
    assert b"late warning r1" in results["bootstrap"].stdout


def test_difference_logging_not_imported_unless_used(tmp_path):
    """Deliberate difference: awslambdaric imports `logging` before the handler; we import it
    (and install the identical root handler) only when the function's code first imports it, to
    keep ~14 ms off every cold start. Visible only to code that inspects sys.modules."""
    results = run_both(tmp_path, "late_logging.logging_loaded", [dict(body=b"{}")])
    bodies = {k: [r.body for r in v.requests if r.method == "POST"] for k, v in results.items()}
    assert bodies == {"awslambdaric": [b"true"], "bootstrap": [b"false"]}


def test_telemetry_fd_variable_removed_for_the_function(tmp_path):
    import os
    read_fd, write_fd = os.pipe()
    try:
        results = run_both(tmp_path, "app.telemetry_env", [dict(body=b"{}")],
                           env={"_LAMBDA_TELEMETRY_LOG_FD": "1"})
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert_same(tmp_path, results)
    assert [r.body for r in results["bootstrap"].requests if r.method == "POST"] == [b"false"]


@pytest.mark.parametrize("env", [{"AWS_LAMBDA_LOG_FORMAT": "JSON"}, {"AWS_LAMBDA_LOG_LEVEL": "ERROR"},
                                 {"AWS_LAMBDA_LOG_LEVEL": "DEBUG"}])
@pytest.mark.parametrize("handler", ["raise_at_import.handler", "app.nope"])
def test_init_errors_in_each_log_setting(tmp_path, handler, env):
    results = run_both(tmp_path, handler, env=env, until=lambda requests: False)
    assert_same(tmp_path, results)

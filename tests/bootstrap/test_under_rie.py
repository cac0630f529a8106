"""Against the real RIE: the same scenarios with awslambdaric and with our bootstrap as the runtime.
What the caller receives (status, body) and what each runtime posted (captured by a recording proxy
between the runtime and RIE's Runtime API) must match, as must the log lines they print.

Normalised: request ids (RIE makes fresh UUIDs), timestamps and durations, the task directory, the
User-Agent (a named difference, see test_differential.py)."""

import base64
import json
import re

import pytest

from bootstrap_handlers.rie import rie
from bootstrap_handlers.runners import task_dir

DIRS = {"awslambdaric": "aws", "bootstrap": "our"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
DURATIONS = re.compile(r"(Duration|Billed Duration|Init Duration): [0-9.]+ ms")


def norm(data, task):
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.replace(str(task), "<TASK>")
    text = UUID.sub("<ID>", text)
    text = TIMESTAMP.sub("<TS>", text)
    return DURATIONS.sub(r"\1: <N> ms", text)


def posted(session, task):
    out = []
    for r in session.proxy.requests():
        headers = []
        for name, value in r.headers:
            if name.lower() in ("user-agent", "host"):
                continue
            if name.lower() == "lambda-runtime-function-xray-error-cause":
                cause = json.loads(value)
                cause["paths"] = sorted(cause["paths"])
                value = norm(json.dumps(cause), task)
            headers.append((name, norm(value, task)))
        out.append((r.method, norm(r.path, task), headers, norm(r.body, task)))
    return out


def runtime_log(output, task):
    """The runtime's lines of RIE's stdout (RIE's own START/END/REPORT kept, durations masked)."""
    return norm(output, task)


def run_both(tmp_path, handler, invokes, env=None):
    """For each runtime: start RIE, send `invokes` (list of (body, headers)) in order; collect what
    the callers received, what the runtime posted, and RIE's stdout."""
    results = {}
    for kind in ("awslambdaric", "bootstrap"):
        task = task_dir(tmp_path / DIRS[kind]) 
        with rie(kind, handler, task, env) as session:
            answers = [session.invoke(body, headers) for body, headers in invokes]
        results[kind] = {
            "answers": [(status, norm(body, task), headers.get("Content-Type"))
                        for status, body, headers in answers],
            "posted": posted(session, task),
            "log": runtime_log(session.output, task),
        }
    return results


def assert_same(results, compare_log=True):
    ours, theirs = results["bootstrap"], results["awslambdaric"]
    assert ours["answers"] == theirs["answers"]
    assert ours["posted"] == theirs["posted"]
    if compare_log:
        assert ours["log"] == theirs["log"]


RESULTS = ["ret_list", "ret_str", "ret_int", "ret_float", "ret_none", "ret_decimal", "ret_bytes",
           "ret_non_ascii", "ret_big"]


def test_success_of_each_return_type(tmp_path):
    invokes = [(json.dumps({"call": name}).encode(), {}) for name in RESULTS]
    invokes.append((b'{"call": "echo", "arg": {"text": "h\\u00e9llo"}}', {}))
    results = run_both(tmp_path, "app.dispatch", invokes)
    assert_same(results)
    assert [a[0] for a in results["bootstrap"]["answers"]] == [200] * len(invokes)


@pytest.mark.parametrize("handler", ["nodot", "sys.handler", "does_not_exist.handler",
                                     "bad_import.handler", "bad_syntax.handler", "app.nope",
                                     "raise_at_import.handler"])
def test_init_errors(tmp_path, handler):
    results = run_both(tmp_path, handler, [(b"{}", {})])
    assert_same(results)
    (answer,) = results["bootstrap"]["answers"]
    assert answer[0] == 502
    assert json.loads(answer[1])["requestId"] == ""


@pytest.mark.parametrize("handler", ["raise_value", "raise_nested", "raise_custom_empty",
                                     "unserialisable"])
def test_invocation_errors(tmp_path, handler):
    results = run_both(tmp_path, f"app.{handler}", [(b'{"x": 5}', {}), (b'{"x": 6}', {})])
    assert_same(results)
    assert [a[0] for a in results["bootstrap"]["answers"]] == [200, 200]


def test_timeout(tmp_path):
    results = run_both(tmp_path, "app.sleep", [(b'{"seconds": 30}', {}), (b'{"seconds": 0}', {})],
                       env={"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"})
    assert_same(results)
    assert results["bootstrap"]["answers"][0][:2] == (200, "Task timed out after 1.00 seconds")
    assert results["bootstrap"]["answers"][1][:2] == (200, '"woke"')


def test_sys_exit_in_handler(tmp_path):
    results = run_both(tmp_path, "app.exit3", [(b"{}", {})])
    assert_same(results)
    status, body, _ = results["bootstrap"]["answers"][0]
    assert status == 502
    assert json.loads(body) == {"errorType": "Runtime.ExitError",
                                "errorMessage": "RequestId: <ID> Error: Runtime exited with error: exit status 3"}


def test_large_events_and_results(tmp_path):
    big = json.dumps({"blob": "q" * 20000, "list": list(range(1000))}).encode()
    results = run_both(tmp_path, "app.echo", [(big, {}), (b'"small"', {})])
    assert_same(results)
    assert json.loads(results["bootstrap"]["answers"][0][1]) == json.loads(big)


def test_client_context(tmp_path):
    context = {"custom": {"foo": "bar"}, "env": {"k": "v"},
               "client": {"installation_id": "inst", "app_title": "title"}}
    header = base64.b64encode(json.dumps(context).encode()).decode()
    results = run_both(tmp_path, "app.context_info",
                       [(b"{}", {"X-Amz-Client-Context": header, "X-Amz-Tenant-Id": "tenant-1"}),
                        (b"{}", {})])
    assert_same(results)
    info = json.loads(results["bootstrap"]["answers"][0][1])
    assert info["custom"] == {"foo": "bar"} and info["tenant"] == "tenant-1"
    assert info["function_name"] == "test_function" and info["memory"] == "3008"


@pytest.mark.parametrize("env", [{}, {"AWS_LAMBDA_LOG_FORMAT": "JSON"},
                                 {"AWS_LAMBDA_LOG_LEVEL": "DEBUG"}])
def test_log_lines(tmp_path, env):
    results = run_both(tmp_path, "app.log_lines", [(b"{}", {}), (b"{}", {})], env=env)
    assert_same(results)
    assert "printed line" in results["bootstrap"]["log"]


def test_streamed_response_arrives_concatenated(tmp_path):
    """RIE buffers streamed responses (and ignores trailers): the caller gets the whole body. (No
    awslambdaric counterpart: it cannot stream.)"""
    task = task_dir(tmp_path)
    with rie("bootstrap", "app.stream", task) as session:
        status, body, _ = session.invoke(b"{}")
        status2, body2, _ = session.invoke(b"{}")
    assert (status, body) == (status2, body2) == (200, b"part1-part2-part3")
    post = [r for r in session.proxy.requests() if r.method == "POST"][0]
    assert dict(post.headers)["Lambda-Runtime-Function-Response-Mode"] == "streaming"


def test_shell_bootstrap_copied_elsewhere(tmp_path):
    """bootstrap/bootstrap installed somewhere else (as a Dockerfile puts it in LAMBDA_RUNTIME_DIR),
    handler from _HANDLER: same answers and log lines as `python -m bootstrap <handler>`."""
    import shutil
    import sys
    from pathlib import Path

    import bootstrap

    runtime_dir = tmp_path / "var-runtime"
    runtime_dir.mkdir()
    script = runtime_dir / "bootstrap"
    shutil.copy(Path(bootstrap.__file__).parent / "bootstrap", script)
    invokes = [(b'{"x": 1}', {})]
    seen = {}
    for name, argv, handler, env in [
            ("module", None, "app.raise_value", {}),
            ("script", [str(script)], None, {"_HANDLER": "app.raise_value",
                                             "LAMBDALET_PYTHON": sys.executable})]:
        task = task_dir(tmp_path / name)
        with rie("bootstrap", handler, task, env, runtime_argv=argv) as session:
            answers = [session.invoke(body, headers) for body, headers in invokes]
        seen[name] = ([(s, norm(b, task)) for s, b, _ in answers], norm(session.output, task))
    assert seen["script"] == seen["module"]
    assert json.loads(seen["script"][0][0][1])["errorType"] == "ValueError"


def test_shell_bootstrap_exec_wrapper(tmp_path):
    import shutil
    import sys
    from pathlib import Path

    import bootstrap

    script = tmp_path / "bootstrap"
    shutil.copy(Path(bootstrap.__file__).parent / "bootstrap", script)
    wrapper = tmp_path / "wrapper.sh"
    wrapper.write_text('#!/bin/sh\nexport WRAPPED=yes\nexec "$@"\n')
    wrapper.chmod(0o755)
    task = task_dir(tmp_path / "t")
    (task / "wrapped.py").write_text("import os\n\ndef handler(e, c):\n    return os.environ.get('WRAPPED')\n")
    with rie("bootstrap", None, task, {"_HANDLER": "wrapped.handler", "LAMBDALET_PYTHON": sys.executable,
                                       "AWS_LAMBDA_EXEC_WRAPPER": str(wrapper)},
             runtime_argv=[str(script)]) as session:
        status, body, _ = session.invoke(b"{}")
    assert (status, body) == (200, b'"yes"')


def test_difference_response_too_large_keeps_the_runtime(tmp_path):
    """Deliberate difference: when RIE answers the response POST with 413, awslambdaric dies
    (exit 1; the caller gets 502 and the next invoke a cold start); we log it and go back to
    `next`, so the caller gets RIE's Function.ResponseSizeTooLarge with 200 and the environment
    stays warm. Lambda's own error body is the same in both cases."""
    results = run_both(tmp_path, "app.dispatch", [(b'{"call": "too_large"}', {}),
                                                  (b'{"call": "ret_int"}', {})])
    theirs = results["awslambdaric"]["answers"]
    ours = results["bootstrap"]["answers"]
    assert theirs[0][:2] == (502, ours[0][1])
    assert ours[0][0] == 200
    assert json.loads(ours[0][1])["errorType"] == "Function.ResponseSizeTooLarge"
    assert ours[1][:2] == theirs[1][:2] == (200, "42")
    inits = {k: v["log"].count("module-level print at import") for k, v in results.items()}
    assert inits == {"awslambdaric": 2, "bootstrap": 1}


def test_shell_bootstrap_with_lambdalet_home(tmp_path):
    """The package kept apart from the script (/opt/lambdalet/bootstrap/, script in
    LAMBDA_RUNTIME_DIR): LAMBDALET_HOME points at it, and that copy is the one that runs."""
    import shutil
    import sys
    from pathlib import Path

    import bootstrap

    home = tmp_path / "opt-lambdalet"
    shutil.copytree(Path(bootstrap.__file__).parent, home / "bootstrap",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = tmp_path / "bootstrap"
    shutil.copy(home / "bootstrap" / "bootstrap", script)
    task = task_dir(tmp_path / "t")
    (task / "where.py").write_text(
        "import sys\n\ndef handler(e, c):\n    return [sys.modules['bootstrap'].__file__, sys.path[0]]\n")
    env = {"_HANDLER": "where.handler", "LAMBDALET_PYTHON": sys.executable, "LAMBDALET_HOME": str(home),
           "PYTHONPATH": ""}
    with rie("bootstrap", None, task, env, runtime_argv=[str(script)]) as session:
        status, body, _ = session.invoke(b"{}")
    assert status == 200
    assert json.loads(body) == [str(home / "bootstrap" / "__init__.py"), str(task)]

"""SnapStart hooks against lambdalet's own server (lambdalet-rie --enable-init-caching, which
serves restore/next), with the real snapshot_restore_py registering the hooks."""

import json
import sys

import pytest

from bootstrap_handlers.rie import rie
from bootstrap_handlers.runners import task_dir

LAMBDALET_RIE = [sys.executable, "-c", "import sys; from runtime_api.rie import main; sys.exit(main())"]
SNAP_ENV = {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start"}


def run(tmp_path, env):
    task = task_dir(tmp_path)
    with rie("bootstrap", "snap.handler", task, dict(SNAP_ENV, **env), server=LAMBDALET_RIE,
             server_flags=["--enable-init-caching"]) as session:
        answer = session.invoke(b"{}")
    requests = [(r.method, r.path, dict(r.headers).get("Lambda-Runtime-Function-Error-Type"))
                for r in session.proxy.requests()]
    return answer, requests, session.output.decode()


def test_hooks_run_in_order_around_restore_next(tmp_path):
    (status, body, _), requests, output = run(tmp_path, {})
    assert (status, body) == (200, b'"restored"')
    assert [line for line in output.splitlines() if line.startswith(("before", "after"))] == [
        "before-2 arg kw", "before-1", "after-1", "after-2"]
    paths = [path for _, path, _ in requests]
    assert paths[:2] == ["/2018-06-01/runtime/restore/next", "/2018-06-01/runtime/invocation/next"]
    assert paths[2].endswith("/response")


@pytest.mark.parametrize("failure, path, error_type, caller_sees", [
    ("before", "/2018-06-01/runtime/init/error", "Runtime.BeforeSnapshotError", "ValueError"),
    ("after", "/2018-06-01/runtime/restore/error", "Runtime.AfterRestoreError", "KeyError"),
])
def test_hook_failures_are_reported(tmp_path, failure, path, error_type, caller_sees):
    (status, body, _), requests, _ = run(tmp_path, {"SNAP_FAIL": failure})
    assert ("POST", path, error_type) in requests
    assert status == 502
    assert json.loads(body)["errorType"] == caller_sees

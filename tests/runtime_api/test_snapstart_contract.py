"""SnapStart's contract without a memory snapshot (issue 5, item 4): any runtime sees init type
`snap-start`, its before-snapshot hooks run, `restore/next` is answered after init, its after-restore
hooks run, and the platform reports the restore as Lambda does. Driven with the real awslambdaric and
the real `snapshot_restore_py` hook library."""

from __future__ import annotations

import json
import re

import pytest

from runtime_api import FunctionConfig, ServiceError, environment
from helpers import CapturedLog, awslambdaric_function, running_server, write_function

HOOKS = '''
import os
from snapshot_restore_py import register_after_restore, register_before_snapshot

calls = []
register_before_snapshot(lambda: calls.append("before snapshot"))
register_after_restore(lambda: calls.append("after restore 1"))
register_after_restore(lambda: calls.append("after restore 2"))

def handler(event, context):
    return {"calls": calls, "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
'''

FAILING_RESTORE = '''
from snapshot_restore_py import register_after_restore

def broken():
    raise RuntimeError("cannot reconnect")

register_after_restore(broken)

def handler(event, context):
    return "never"
'''


@pytest.mark.parametrize("runtime", ["awslambdaric", "lambdalet bootstrap"])
async def test_hooks_run_in_order_and_the_restore_is_reported(tmp_path, runtime):
    write_function(tmp_path, HOOKS)
    log = CapturedLog()
    config = (awslambdaric_function("snap", tmp_path, snapstart=True) if runtime == "awslambdaric"
              else FunctionConfig(name="snap", code=str(tmp_path), handler="app.handler", snapstart=True))
    async with running_server(config, sink=log) as server:
        first = await server.invoke("snap", log_type="Tail")
        second = await server.invoke("snap")
    assert json.loads(first.payload) == {
        "calls": ["before snapshot", "after restore 1", "after restore 2"], "init_type": "snap-start"}
    assert json.loads(second.payload)["calls"] == json.loads(first.payload)["calls"]  # hooks ran once
    assert re.search(r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: success\n"
                     r"RESTORE_START Runtime Version: \S+\n"
                     r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\n", log.text), log.text
    report = first.log_tail.splitlines()[-1]
    assert re.search(r"\tRestore Duration: \d+\.\d\d ms\tBilled Restore Duration: \d+ ms\t$", report), report
    assert "Init Duration" not in report


async def test_a_failing_after_restore_hook_is_the_callers_error(tmp_path):
    write_function(tmp_path, FAILING_RESTORE)
    log = CapturedLog()
    async with running_server(awslambdaric_function("snap", tmp_path, snapstart=True), sink=log) as server:
        with pytest.raises(ServiceError) as refused:
            await server.invoke("snap")
    # The caller gets Lambda's SnapStartException; the runtime's report of the hook's error is in
    # the log, and the platform's lines name its type from the runtime's error-type header.
    assert (refused.value.status, refused.value.error_type) == (400, "SnapStartException")
    assert "cannot reconnect" in log.text
    assert re.search(r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\tStatus: error\tError Type: Runtime.AfterRestoreError",
                     log.text), log.text


async def test_without_snapstart_the_restore_routes_do_not_exist(tmp_path):
    write_function(tmp_path, HOOKS)
    async with running_server(awslambdaric_function("plain", tmp_path)) as server:
        body = json.loads((await server.invoke("plain")).payload)
    assert body == {"calls": [], "init_type": "on-demand"}


SLOW_RESTORE = '''
import os, time
from snapshot_restore_py import register_after_restore

register_after_restore(lambda: time.sleep(60))

def handler(event, context):
    return "never"
'''


async def test_a_restore_that_outruns_its_limit_is_a_snapstart_timeout(tmp_path, monkeypatch):
    """The 10 s restore limit (shortened here) runs from restore/next, after init, as on Lambda."""
    monkeypatch.setattr(environment, "RESTORE_TIMEOUT", 1.0)
    write_function(tmp_path, SLOW_RESTORE)
    log = CapturedLog()
    async with running_server(awslambdaric_function("snap", tmp_path, snapstart=True), sink=log) as server:
        with pytest.raises(ServiceError) as refused:
            await server.invoke("snap")
    assert (refused.value.status, refused.value.error_type) == (408, "SnapStartTimeoutException")
    assert re.search(r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\tStatus: timeout\n", log.text), log.text

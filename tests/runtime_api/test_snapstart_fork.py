"""SnapStart by fork (issue 5, items 1-3): lambdalet's runtime initialises once as a template and
every environment of the function is a forked copy of it, restored in its own environment.

Each test runs a real server with lambdalet's bootstrap; copies are made to coexist with the Gate
(handlers block until released), so each invocation below that needs its own environment has one.
"""

from __future__ import annotations

import json
import os
import re
import signal

import pytest
import trio
from botocore.exceptions import ClientError

from client_functions import lambda_client, process_alive
from runtime_api import FunctionConfig, ServiceError, environment
from sandbox import cgroups, host
from helpers import CapturedLog, Gate, running_server, wait_until, write_function
from test_snapstart_contract import FAILING_RESTORE  # the same failing hook, with lambdalet's runtime

ROOT = os.geteuid() == 0
SUPPORT = cgroups.detect() if ROOT else cgroups.CgroupSupport()
needs_isolation = pytest.mark.skipif(
    not (ROOT and SUPPORT.memory and host.mount_namespace_problem() is None),
    reason="needs root with writable cgroup v1 memory and mount namespaces (CI runs as root)")

HOOKS = Gate.handler_snippet + '''
import os, random, secrets, ssl, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

ssl.RAND_bytes(16)  # OpenSSL's generator in use before the snapshot, its state copied into each copy

calls = []
register_before_snapshot(lambda: calls.append(f"before snapshot in {os.getpid()}"))
register_before_snapshot(lambda: calls.append("before snapshot, registered second, runs first"))
register_after_restore(lambda: calls.append(f"after restore 1 in {os.getpid()}"))
register_after_restore(lambda: calls.append("after restore 2"))

def handler(event, context):
    if event.get("gate"):
        wait_at_gate(context)
    return {"calls": calls, "pid": os.getpid(), "ppid": os.getppid(),
            "init_type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"],
            "stream": context.log_stream_name, "runtime_api": os.environ["AWS_LAMBDA_RUNTIME_API"],
            "random": random.random(), "uuid4": str(uuid.uuid4()), "urandom": os.urandom(16).hex(),
            "secrets": secrets.token_hex(16), "ssl": ssl.RAND_bytes(16).hex()}
'''


def snapstart_function(code, **settings) -> FunctionConfig:
    return FunctionConfig(name="snap", code=str(code), handler="app.handler", snapstart=True, **settings)


async def invoke_json(server, payload: dict, name: str = "snap") -> dict:
    result = await server.invoke(name, json.dumps(payload).encode())
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


async def invoke_at_once(server, count: int, gate: Gate, payload: dict | None = None) -> list:
    """`count` invocations held in their handlers at the same time (so in `count` environments),
    then released; their results in order."""
    results: list = [None] * count

    async def one(i: int) -> None:
        results[i] = await server.invoke("snap", json.dumps(payload or {"gate": True}).encode())

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
        await gate.wait_arrivals(count)
        await gate.release_all()
    return results


def template(server):
    return server.functions["snap"].template


async def test_copies_run_the_hooks_in_order_and_are_reported_as_restores(tmp_path):
    write_function(tmp_path, HOOKS)
    log = CapturedLog()
    async with trio.open_nursery() as nursery:
        gate = await Gate().start(nursery)
        async with running_server(snapstart_function(tmp_path, env={"GATE_PORT": str(gate.port)}), sink=log) as server:
            results = [json.loads(r.payload) for r in await invoke_at_once(server, 2, gate)]
            tail = (await server.invoke("snap", log_type="Tail")).log_tail
            template_pid = template(server).environment.pid
        nursery.cancel_scope.cancel()
    first, second = results
    assert first["pid"] != second["pid"] and template_pid not in (first["pid"], second["pid"])
    # Before-snapshot hooks ran once, in the template, last registered first; after-restore hooks
    # in each copy, in registration order.
    assert first["calls"] == ["before snapshot, registered second, runs first",
                              f"before snapshot in {template_pid}",
                              f"after restore 1 in {first['pid']}", "after restore 2"]
    assert second["calls"][2] == f"after restore 1 in {second['pid']}"
    # Each copy is the server's child (not the template's), has its own Runtime API and log stream.
    assert first["ppid"] == second["ppid"] == os.getpid()
    assert first["runtime_api"] != second["runtime_api"] and first["stream"] != second["stream"]
    assert first["init_type"] == "snap-start"
    # One INIT_REPORT (the template's), then a RESTORE_START / RESTORE_REPORT per copy.
    assert len(re.findall(r"INIT_REPORT Init Duration: \d+\.\d\d ms\tPhase: init\tStatus: success\n", log.text)) == 1
    assert len(re.findall(r"RESTORE_START Runtime Version: lambdalet:\S+\n", log.text)) == 2
    assert len(re.findall(r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\n", log.text)) == 2
    reports = re.findall(r"REPORT RequestId: \S+\t.*\n", log.text)
    assert sum("\tRestore Duration: " in line and "\tBilled Restore Duration: " in line for line in reports) == 2
    assert not any("Init Duration" in line for line in reports)
    assert "Restore Duration" not in tail.splitlines()[-1]  # a warm invocation


async def test_restored_copies_do_not_share_random_state(tmp_path):
    write_function(tmp_path, HOOKS)
    async with trio.open_nursery() as nursery:
        gate = await Gate().start(nursery)
        async with running_server(snapstart_function(tmp_path, env={"GATE_PORT": str(gate.port)})) as server:
            results = [json.loads(r.payload) for r in await invoke_at_once(server, 3, gate)]
        nursery.cancel_scope.cancel()
    assert len({r["pid"] for r in results}) == 3
    for source in ("random", "uuid4", "urandom", "secrets", "ssl"):
        assert len({r[source] for r in results}) == 3, (source, results)


THREADED = '''
import threading
stop = threading.Event()
threading.Thread(target=stop.wait, name="poller", daemon=True).start()

def handler(event, context):
    return "never"
'''


async def test_a_template_with_threads_is_refused_naming_them(tmp_path):
    write_function(tmp_path, THREADED)
    log = CapturedLog()
    async with running_server(snapstart_function(tmp_path), sink=log) as server:
        result = await server.invoke("snap")
        await server.invoke("snap")
        # The build at start-up, then one per invocation: no staged copy tries a failed template.
        assert template(server).builds == 3
    body = json.loads(result.payload)
    assert result.function_error == "Unhandled"
    assert body["errorType"] == "TemplateRefused"
    assert "1 thread(s) besides the main thread" in body["errorMessage"]
    assert "poller (tid " in body["errorMessage"]
    assert "INIT_REPORT" in log.text and "Error Type: Runtime.BeforeSnapshotError" in log.text


VERSIONED = '''
VERSION = {version}

def handler(event, context):
    return VERSION
'''


async def test_the_template_is_rebuilt_when_the_code_changes(tmp_path):
    write_function(tmp_path, VERSIONED.format(version=1))
    async with running_server(snapstart_function(tmp_path)) as server:
        assert await invoke_json(server, {}) == 1
        server.functions["snap"].shutdown()  # the next invocation needs a new copy
        assert await invoke_json(server, {}) == 1
        assert template(server).builds == 1  # same code: same template
        os.utime(tmp_path / "app.py")  # touched, not changed: still the same template
        server.functions["snap"].shutdown()
        assert await invoke_json(server, {}) == 1
        assert template(server).builds == 1
        write_function(tmp_path, VERSIONED.format(version=2))
        server.functions["snap"].shutdown()
        assert await invoke_json(server, {}) == 2
        assert template(server).builds == 2


async def test_the_template_is_rotated_after_k_restores(tmp_path):
    write_function(tmp_path, VERSIONED.format(version=1))
    async with running_server(snapstart_function(tmp_path, snapstart_rotate=2)) as server:
        for _ in range(5):
            assert await invoke_json(server, {}) == 1
            server.functions["snap"].shutdown()
        assert template(server).builds == 3  # restores 1-2, 3-4, 5


async def test_killing_the_template_leaves_its_copies_and_the_next_restore_rebuilds_it(tmp_path):
    write_function(tmp_path, HOOKS)
    async with running_server(snapstart_function(tmp_path)) as server:
        first = await invoke_json(server, {})
        old = template(server).environment
        os.kill(old.pid, signal.SIGKILL)
        await old.closed.wait()
        again = await invoke_json(server, {})  # the warm copy still serves
        assert again["pid"] == first["pid"]
        server.functions["snap"].shutdown()
        fresh = await invoke_json(server, {})  # a new copy, of a new template
        assert template(server).builds == 2
        assert fresh["pid"] != first["pid"]
        assert fresh["calls"][1] == f"before snapshot in {template(server).environment.pid}"



async def test_a_staged_copy_runs_no_function_code_until_an_invocation_wants_it(tmp_path):
    """Ahead of demand a copy is forked into an environment of its own and waits in restore/next;
    its restore (RESTORE_START, the after-restore hooks) begins with the invocation that takes it."""
    write_function(tmp_path, HOOKS)
    log = CapturedLog()
    async with running_server(snapstart_function(tmp_path), sink=log) as server:
        staged = await server.functions["snap"].wait_staged()
        assert staged.proto.state.name == "STARTED" and "RESTORE_START" not in log.text
        body = await invoke_json(server, {})
        assert body["pid"] == staged.pid
        assert body["calls"][2:] == [f"after restore 1 in {staged.pid}", "after restore 2"]
        assert log.text.count("RESTORE_START") == log.text.count("RESTORE_REPORT") == 1


async def test_a_staged_copy_of_outdated_code_is_not_used(tmp_path):
    write_function(tmp_path, VERSIONED.format(version=1))
    async with running_server(snapstart_function(tmp_path)) as server:
        function = server.functions["snap"]
        assert await invoke_json(server, {}) == 1
        staged = await function.wait_staged()
        write_function(tmp_path, VERSIONED.format(version=2))
        for env in [env for env in function.environments if env is not staged]:
            env.shutdown()  # the next invocation needs a new environment
        assert await invoke_json(server, {}) == 2
        await staged.closed.wait()
        assert template(server).builds == 2


async def test_a_staged_copy_that_died_is_replaced_by_a_restore_on_demand(tmp_path):
    write_function(tmp_path, HOOKS)
    async with running_server(snapstart_function(tmp_path)) as server:
        function = server.functions["snap"]
        staged = await function.wait_staged()
        os.kill(staged.pid, signal.SIGKILL)
        await staged.closed.wait()
        body = await invoke_json(server, {})
        assert body["pid"] != staged.pid and body["calls"][2] == f"after restore 1 in {body['pid']}"
        assert template(server).builds == 1


async def test_a_failing_after_restore_hook_fails_the_restore_not_the_template(tmp_path):
    """The caller gets Lambda's SnapStartException (400); the hook's own error is in the log."""
    write_function(tmp_path, FAILING_RESTORE)
    log = CapturedLog()
    async with running_server(snapstart_function(tmp_path), sink=log) as server:
        refusals = []
        for _ in range(2):
            with pytest.raises(ServiceError) as refused:
                await server.invoke("snap")
            refusals.append(refused.value)
        builds = template(server).builds
    for refused in refusals:
        assert (refused.status, refused.error_type) == (400, "SnapStartException")
        assert refused.message.startswith("The afterRestore() runtime hook encountered an error.")
    assert log.text.count("cannot reconnect") >= 2  # the runtime's own report of the hook's error
    assert builds == 1
    assert len(re.findall(r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\tStatus: error\t"
                          r"Error Type: Runtime.AfterRestoreError", log.text)) == 2


ENDS_IN_RESTORE = '''
import os
from snapshot_restore_py import register_after_restore

register_after_restore(lambda: os._exit(3))

def handler(event, context):
    return "never"
'''


async def test_a_copy_that_ends_before_its_restore_is_done_is_a_failed_restore(tmp_path):
    """Issue 21: the caller of a copy that exits during its restore gets Lambda's SnapStartException
    (not the Runtime.ExitError of a runtime that died mid-invocation); the log says how it ended."""
    write_function(tmp_path, ENDS_IN_RESTORE)
    log = CapturedLog()
    async with running_server(snapstart_function(tmp_path), sink=log) as server:
        with pytest.raises(ServiceError) as refused:
            await server.invoke("snap")
        assert template(server).environment.alive  # the template serves on
    assert (refused.value.status, refused.value.error_type) == (400, "SnapStartException")
    assert re.search(r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\tStatus: error\tError Type: Runtime.ExitError",
                     log.text), log.text


SLOW_RESTORE = '''
import os, time
from snapshot_restore_py import register_after_restore

def slow():
    if os.path.exists(os.environ["SLOW_MARK"]):
        time.sleep(60)

register_after_restore(slow)

def handler(event, context):
    return {"pid": os.getpid()}
'''


async def test_a_restore_that_outruns_its_limit_fails_as_lambdas_does(tmp_path, monkeypatch):
    """Past the restore limit (Lambda's 10 s, shortened here) the caller gets SnapStartTimeoutException
    (408, as boto3 reads it), the copy is gone, and the next restore serves."""
    monkeypatch.setattr(environment, "RESTORE_TIMEOUT", 1.0)
    mark = tmp_path / "slow"
    mark.write_text("")
    code = write_function(tmp_path / "code", SLOW_RESTORE)
    log = CapturedLog()
    # Isolation none: the hook sees the test's mark in the host's /tmp.
    config = snapstart_function(code, isolation="none", env={"SLOW_MARK": str(mark)})
    async with running_server(config, sink=log) as server:
        staged = await server.functions["snap"].wait_staged()
        client = lambda_client(server.endpoint)
        with pytest.raises(ClientError) as refused:
            await trio.to_thread.run_sync(lambda: client.invoke(FunctionName="snap", Payload=b"{}"))
        error = refused.value.response
        assert error["Error"]["Code"] == "SnapStartTimeoutException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 408
        assert error["Error"]["Message"] == "Lambda couldn't restore the snapshot within the timeout limit."
        await staged.closed.wait()
        mark.unlink()
        body = await invoke_json(server, {})
        assert body["pid"] != staged.pid
    assert re.search(r"RESTORE_REPORT Restore Duration: \d+\.\d\d ms\tStatus: timeout\n", log.text), log.text

ISOLATED = Gate.handler_snippet + '''
import os
open("/tmp/template-was-here", "w").close()

def handler(event, context):
    if event.get("hog"):
        hog = []
        while True:
            hog.append(bytearray(8 << 20))
    mine = f"/tmp/{context.aws_request_id}"
    open(mine, "w").close()
    seen = sorted(os.listdir("/tmp"))
    if event.get("gate"):
        wait_at_gate(context)
    cgroup = open("/proc/self/cgroup").read()
    return {"tmp": seen, "cwd": os.getcwd(), "file": __file__, "cgroup": cgroup}
'''


@needs_isolation
async def test_a_copy_gets_its_own_tmp_cgroup_and_memory_limit(tmp_path):
    code = write_function(tmp_path / "code", ISOLATED)
    log = CapturedLog()
    async with trio.open_nursery() as nursery:
        gate = await Gate().start(nursery)
        config = snapstart_function(code, memory=128, env={"GATE_PORT": str(gate.port)}, isolation="standard")
        async with running_server(config, sink=log) as server:
            results = [json.loads(r.payload) for r in await invoke_at_once(server, 2, gate)]
            hog = await server.invoke("snap", b'{"hog": true}')
            after = await invoke_json(server, {})
        nursery.cancel_scope.cancel()
    first, second = results
    # Each copy's /tmp is its own: neither the template's file nor the other copy's (what the runtime
    # needs from the host's /tmp, a checkout there, is bound back into each).
    mine = [set(r["tmp"]) - set(os.listdir("/tmp")) for r in results]
    assert len(mine[0]) == len(mine[1]) == 1 and mine[0] != mine[1]
    assert "template-was-here" not in first["tmp"] + second["tmp"]
    assert first["cwd"] == "/var/task" and first["file"] == "/var/task/app.py"
    # Each copy is in a memory cgroup of its own.
    memory = [re.search(r"memory:(\S+)", r["cgroup"]).group(1) for r in results]
    assert memory[0] != memory[1] and all("lambdalet-" in m for m in memory)
    # A memory hog is killed by its own copy's limit, and reported as Lambda does; the server goes on.
    assert hog.function_error == "Unhandled"
    assert json.loads(hog.payload)["errorType"] == "Runtime.OutOfMemory"
    assert "Error Type: Runtime.OutOfMemory" in log.text
    assert after["cwd"] == "/var/task"  # and the others carry on


async def test_with_provisioned_concurrency_copies_are_restored_ahead_of_demand(tmp_path):
    write_function(tmp_path, HOOKS)
    log = CapturedLog()
    async with running_server(snapstart_function(tmp_path, provisioned=2), sink=log) as server:
        function = server.functions["snap"]
        await function.wait_provisioned()
        # Beside them, one copy is staged, waiting in restore/next (its restore not yet begun).
        ready = {env.pid for env in function.environments if env.options.provisioned}
        body = await invoke_json(server, {})
        restores_before_invoke = log.text.count("RESTORE_START")
    assert len(ready) == 2 and template(server).environment.pid not in ready
    assert body["pid"] in ready  # served by a copy made before it was asked for
    assert restores_before_invoke == 2
    assert body["calls"][2] == f"after restore 1 in {body['pid']}"


def test_lambdalet_bench_writes_its_tables_and_chart(tmp_path):
    """The benchmark's plumbing, once round, on the trivial handler (its figures are not checked:
    speed is shown in benchmarks/, not asserted in tests)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "runtime_api.cli", "bench", "--samples", "1", "--handlers",
                           "trivial", "--output", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "coldstart.json").read_text())
    trivial = data["handlers"]["trivial"]
    for key in ("cold", "restore", "warm", "rie_cold", "restore_duration"):
        assert trivial[key]["n"] >= 1, key
    assert "| trivial |" in (tmp_path / "coldstart.md").read_text()


@needs_isolation
async def test_at_isolation_strict_snapstart_keeps_to_the_contract(tmp_path, caplog):
    write_function(tmp_path, HOOKS)
    async with running_server(snapstart_function(tmp_path, isolation="strict")) as server:
        body = await invoke_json(server, {})
        assert template(server) is None
    assert body["init_type"] == "snap-start"
    assert body["calls"][1:] == [f"before snapshot in {body['pid']}", f"after restore 1 in {body['pid']}",
                                 "after restore 2"]
    assert "at isolation strict a forked copy could not join its own network namespace" in caplog.text


BURST = Gate.handler_snippet + '''
def handler(event, context):
    wait_at_gate(context)
    return {"ok": True}
'''


@needs_isolation
async def test_a_burst_of_hundreds_of_restores_is_served_by_one_template(tmp_path):
    """Issue 21. Each spare is charged to its template's memory cgroup for the pages it touches
    before it joins its environment, and those charges stay there: with the function's limit kept
    on the parked template, a few hundred copies ended it (OOM-killed) in the middle of the burst,
    and a restore then in flight could fail as Runtime.ExitError."""
    code = write_function(tmp_path / "code", BURST)
    async with trio.open_nursery() as nursery:
        gate = await Gate().start(nursery)
        config = snapstart_function(code, memory=128, timeout=120, concurrency=320, env={"GATE_PORT": str(gate.port)},
                                    isolation="standard")
        async with running_server(config) as server:
            results = await invoke_at_once(server, 300, gate)
            builds = template(server).builds
        nursery.cancel_scope.cancel()
    assert [json.loads(r.payload) for r in results if r.function_error] == []
    assert builds == 1


BALLAST = '''
import os
ballast = b"x" * (40 << 20)  # resident in the template, shared with every copy

def handler(event, context):
    extra = b"y" * (event["mb"] << 20)
    return {"pid": os.getpid(), "extra": len(extra) >> 20}
'''


@needs_isolation
async def test_a_copy_counts_its_templates_memory_as_lambda_counts_a_restored_snapshot(tmp_path):
    """Issue 19: Max Memory Used of a restored copy is its whole footprint (its template's resident
    set included, though those pages are charged to the template's cgroup), and the copy can
    allocate only up to its memory size in all: just under it succeeds, just over is
    Runtime.OutOfMemory."""
    code = write_function(tmp_path / "code", BALLAST)
    log = CapturedLog()
    config = snapstart_function(code, memory=128, timeout=30, isolation="standard")
    async with running_server(config, sink=log) as server:
        small = await server.invoke("snap", b'{"mb": 0}', log_type="Tail")
        resident_mb = template(server).resident_bytes >> 20
        under = await server.invoke("snap", json.dumps({"mb": 100 - resident_mb - 10}).encode())
        server.functions["snap"].shutdown()  # a fresh copy for the next
        over = await server.invoke("snap", json.dumps({"mb": 128 - resident_mb + 10}).encode())
        after = await server.invoke("snap", b'{"mb": 0}')
    assert resident_mb >= 40
    used = int(re.search(r"Max Memory Used: (\d+) MB", small.log_tail).group(1))
    assert used >= resident_mb
    assert under.function_error is None, under.payload
    assert over.function_error == "Unhandled" and json.loads(over.payload)["errorType"] == "Runtime.OutOfMemory"
    assert after.function_error is None  # the server serves on


@needs_isolation
async def test_a_spare_that_died_unused_is_replaced_by_the_same_template(tmp_path):
    """The template keeps a spare copy forked ahead of demand, in its own cgroups until it is used.
    One that died meanwhile costs the next restore a fork, not a new template."""
    write_function(tmp_path, HOOKS)
    log = CapturedLog()
    async with running_server(snapstart_function(tmp_path, isolation="standard"), sink=log) as server:
        first = await invoke_json(server, {})
        await server.functions["snap"].wait_staged()  # made from the spare; the template forks the next
        spares = await trio.to_thread.run_sync(_spares, template(server).environment)
        for pid in spares:
            os.kill(pid, signal.SIGKILL)
        await trio.to_thread.run_sync(wait_until, lambda: not any(map(process_alive, spares)), "the spare to die")
        server.functions["snap"].shutdown()  # the staged copy too: the next copy is the dead spare's
        again = await invoke_json(server, {})
        assert again["pid"] not in spares and again["pid"] != first["pid"]
        assert template(server).builds == 1
    assert "template is gone" not in log.text and "failed its init" not in log.text


def _members_besides(parked) -> list[int]:
    """The processes in a parked template's cgroup other than the template."""
    with open(os.path.join(parked.cgroup.pids, "cgroup.procs")) as procs:
        return [int(pid) for pid in procs.read().split() if int(pid) != parked.pid]


def _spares(parked) -> list[int]:
    """The template's spares, once there is one: members of its cgroup whose parent is the server
    (this process) once their middle has exited."""
    found: list[int] = []

    def ready() -> bool:
        found[:] = [pid for pid in _members_besides(parked) if _parent(pid) == os.getpid()]
        return bool(found)

    wait_until(ready, "the template's spare")
    return found


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None

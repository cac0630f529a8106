"""Lambda's limits as a caller of `lambdalet serve` sees them, through per-environment cgroups: an
out-of-memory kill reported as Runtime.OutOfMemory, a fork bomb stopped by the pids limit, a
timed-out environment's whole process tree gone (a setsid daemon included), Max Memory Used that
counts the children, nothing left behind when the server stops, and stale cgroups of a crashed run
removed at start-up. Driven through the embedding API with lambdalet's own runtime client.

Needs root and writable cgroup v1 memory and pids hierarchies (CI runs as root)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import trio

from helpers import REPO, Gate, running_server, write_function
from runtime_api import FunctionConfig
from sandbox import cgroups, host

SUPPORT = cgroups.detect() if os.geteuid() == 0 else cgroups.CgroupSupport()
pytestmark = pytest.mark.skipif(
    not (SUPPORT.memory and SUPPORT.pids),
    reason="needs root with writable cgroup v1 memory and pids hierarchies (CI runs as root)",
)

HANDLERS = Gate.handler_snippet + '''
import json, os, subprocess, sys

def whoami(event, context):
    return {"pid": os.getpid()}

def hog(event, context):
    chunks = []
    for _ in range(event.get("mb", 1024) // 8):
        chunks.append(b"x" * (8 << 20))  # written, so charged
    return {"allocated_mb": 8 * len(chunks)}

def fork_bomb(event, context):
    read_end, write_end = os.pipe()
    children, refused = [], None
    while len(children) < 5000:
        try:
            pid = os.fork()
        except OSError as exc:
            refused = exc.errno
            break
        if pid == 0:
            os.close(write_end)
            os.read(read_end, 1)  # each child waits until the handler lets go
            os._exit(0)
        children.append(pid)
    os.close(write_end)
    os.close(read_end)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "refused": refused}

def _daemon():
    """Double fork with setsid: a daemon that left the runtime's process group and session."""
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()
        second = os.fork()
        if second == 0:
            os.execvp("sleep", ["sleep", "1000"])
        os.write(write_end, str(second).encode())
        os._exit(0)
    os.waitpid(first, 0)
    os.close(write_end)
    pid = int(os.read(read_end, 32))
    os.close(read_end)
    return pid

def tree_and_hang(event, context):
    child = subprocess.Popen(["sleep", "1000"])
    pids = {"runtime": os.getpid(), "child": child.pid, "daemon": _daemon()}
    wait_at_gate(context, json.dumps(pids))
    while True:
        wait_at_gate(context)

def leave_daemon(event, context):
    """A double-forked daemon that ends when the test releases it, long after this invocation."""
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        os.setsid()
        second = os.fork()
        if second == 0:
            wait_at_gate(context, "daemon")
            os._exit(0)
        os.write(write_end, str(second).encode())
        os._exit(0)
    os.waitpid(first, 0)
    os.close(write_end)
    pid = int(os.read(read_end, 32))
    os.close(read_end)
    return {"daemon": pid}

def child_memory(event, context):
    out = subprocess.run([sys.executable, "-c", "x = b'x' * (200 << 20); print(len(x) >> 20)"],
                         capture_output=True, text=True, check=True)
    return {"child_mb": int(out.stdout)}
'''


@pytest.fixture
def code(tmp_path):
    return write_function(tmp_path / "fn", HANDLERS)


@pytest.fixture(autouse=True)
def no_leftover_cgroups():
    yield
    assert _our_cgroups() == [], "environment cgroups left after the test"


def _our_cgroups() -> list[str]:
    prefix = f"{cgroups.PREFIX}{os.getpid()}-"
    return [os.path.join(d, e) for d in SUPPORT.directories() for e in os.listdir(d) if e.startswith(prefix)]


def function(code, name, handler, gate=None, **settings) -> FunctionConfig:
    env = {"GATE_PORT": str(gate.port)} if gate is not None else {}
    return FunctionConfig(name=name, code=str(code), handler=f"app.{handler}", env=env, **settings)


def gone(pid: int) -> bool:
    """Not running and reaped (a zombie still has its /proc entry)."""
    return not os.path.exists(f"/proc/{pid}")


def max_memory_used(tail: str) -> int:
    return int(re.search(r"Max Memory Used: (\d+) MB", tail)[1])


async def environments_closed(server, name: str) -> None:
    for env in list(server.functions[name].environments):
        await env.closed.wait()


async def test_memory_hog_is_killed_and_reported_out_of_memory_while_others_carry_on(code):
    async with running_server(function(code, "hog", "hog"), function(code, "other", "whoami")) as server:
        other = json.loads((await server.invoke("other")).payload)

        result = await server.invoke("hog", b'{"mb": 1024}', log_type="Tail")

        assert result.function_error == "Unhandled"
        assert json.loads(result.payload) == {
            "errorType": "Runtime.OutOfMemory",
            "errorMessage": f"RequestId: {result.request_id} Error: Runtime exited with error: signal: killed",
        }
        assert "Status: error\tError Type: Runtime.OutOfMemory\t" in result.log_tail
        assert "Memory Size: 128 MB\tMax Memory Used: 128 MB\t" in result.log_tail
        # The other environment is the same process, still serving; the hog's function recovers.
        assert json.loads((await server.invoke("other")).payload) == other
        assert json.loads((await server.invoke("hog", b'{"mb": 16}')).payload) == {"allocated_mb": 16}


async def test_fork_bomb_is_stopped_by_the_pids_limit(code):
    # Each forked Python child copies about 1 MB on write: 1023 of them need more than 1024 MB.
    async with running_server(function(code, "bomb", "fork_bomb", memory=3008, timeout=60),
                              function(code, "other", "whoami")) as server:
        result = await server.invoke("bomb")

        assert result.function_error is None
        answer = json.loads(result.payload)
        assert answer["forked"] < cgroups.DEFAULT_PIDS_MAX  # the runtime's own threads count too
        assert answer["refused"] == 11  # EAGAIN, as Lambda's runtime sees it
        assert (await server.invoke("other")).function_error is None


async def test_timeout_kills_the_whole_tree_including_a_setsid_daemon(code, gate, nursery):
    async with running_server(function(code, "hang", "tree_and_hang", gate, timeout=1)) as server:
        results = []
        done = trio.Event()

        async def call():
            results.append(await server.invoke("hang"))
            done.set()

        nursery.start_soon(call)
        (line,) = await gate.wait_arrivals(1)
        pids = json.loads(line.split(" ", 1)[1])
        await done.wait()
        await environments_closed(server, "hang")

        assert json.loads(results[0].payload)["errorType"] == "Sandbox.Timedout"
        assert {name: gone(pid) for name, pid in pids.items()} == {"runtime": True, "child": True, "daemon": True}


async def test_a_daemon_left_behind_is_reaped_when_it_ends_while_its_environment_lives(code, gate):
    async with running_server(function(code, "leaver", "leave_daemon", gate)) as server:
        daemon = json.loads((await server.invoke("leaver")).payload)["daemon"]
        await gate.wait_arrivals(1)
        pidfd = os.pidfd_open(daemon)
        try:
            await gate.release_all()
            await trio.lowlevel.wait_readable(pidfd)  # it has ended: a zombie, re-parented to lambdalet

            await server.invoke("leaver")  # the environment reaps what has ended as each invocation starts

            assert gone(daemon)
        finally:
            os.close(pidfd)


async def test_max_memory_used_counts_child_processes(code):
    async with running_server(function(code, "parent", "child_memory", memory=512, timeout=60)) as server:
        result = await server.invoke("parent", log_type="Tail")

        assert json.loads(result.payload) == {"child_mb": 200}
        assert max_memory_used(result.log_tail) >= 200


async def test_stopping_the_server_leaves_no_process_and_no_cgroup(code, gate):
    async with running_server(function(code, "hang", "tree_and_hang", gate, timeout=60)) as server:
        async with trio.open_nursery() as callers:
            callers.start_soon(server.invoke, "hang")
            (line,) = await gate.wait_arrivals(1)
            assert _our_cgroups() != []
            callers.cancel_scope.cancel()
    pids = json.loads(line.split(" ", 1)[1])

    assert {name: gone(pid) for name, pid in pids.items()} == {"runtime": True, "child": True, "daemon": True}
    assert _our_cgroups() == []


async def test_stale_cgroups_of_a_crashed_run_are_removed_at_start_up(code):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names a lambdalet that no longer runs
    stale = [os.path.join(d, f"{cgroups.PREFIX}{dead.pid}-7") for d in SUPPORT.directories()]
    survivor = None
    try:
        for directory in stale:
            os.mkdir(directory)
        # A process the crashed run left in its environment.
        survivor = subprocess.Popen(["sleep", "1000"])
        for directory in stale:
            with open(os.path.join(directory, "cgroup.procs"), "w") as procs:
                procs.write(str(survivor.pid))

        async with running_server(function(code, "other", "whoami")):
            assert [d for d in stale if os.path.exists(d)] == []
            assert survivor.wait() == -9
    finally:
        if survivor is not None and survivor.poll() is None:
            survivor.kill()
            survivor.wait()
        for directory in stale:
            if os.path.exists(directory):
                os.rmdir(directory)


def test_without_limits_no_cgroup_is_created():
    """RIE's semantics (and any host asking for none): the subreaper, but no cgroup."""
    assert host.prepare(limits=False) == cgroups.CgroupSupport()


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root privileges to play an unprivileged user")
def test_an_unprivileged_host_says_which_protections_are_missing_and_carries_on():
    script = (
        "import os; from sandbox import host\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "print(host.prepare(limits=True).any)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO)

    assert (run.returncode, run.stdout) == (0, "False\n")
    warnings = run.stderr.splitlines()
    assert [line.split(" (")[0].split(":")[2].strip() for line in warnings] == [
        "no memory limit through cgroups", "no process limit", "no cgroup at all"]


def test_a_snapstart_copys_memory_limit_can_be_set_again_higher_or_lower():
    """A restore retried on a rebuilt template sets its copy's limit a second time, from another
    resident set (runtime_api/snapstart.py); with swap accounting the kernel refuses a limit above
    the swap-inclusive one, so the two must move in the right order either way."""
    cgroup = cgroups.EnvironmentCgroup(SUPPORT, memory_mb=128)
    try:
        for resident_mb in (40, 20, 60):
            cgroup.inherit(resident_mb << 20)
            v1 = os.path.join(cgroup.memory, "memory.limit_in_bytes")
            limit = int(open(v1 if os.path.exists(v1) else os.path.join(cgroup.memory, "memory.max")).read())
            assert limit == (128 - resident_mb) << 20
    finally:
        cgroup.remove()

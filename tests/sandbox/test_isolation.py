"""Isolation levels as a function sees them, through the embedding API with lambdalet's own runtime
client: under `standard` each environment has its own empty /tmp (a tmpfs of the function's
ephemeral storage, gone with the environment) and its code read-only at /var/task, and the host
keeps its /tmp and its mounts; `none` is a plain process, as before; what cannot be had is said.

Needs root (CI runs as root) and util-linux's unshare: mount namespaces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import trio

from helpers import (BASE_PYTHON, REPO, Gate, lambdalet_runtime, mountinfo, running_server, without_user_namespaces,
                     write_function)
from runtime_api import FunctionConfig
from sandbox import host

PROBLEM = host.mount_namespace_problem() if os.geteuid() == 0 else "not root"
pytestmark = pytest.mark.skipif(
    PROBLEM is not None, reason=f"needs root and mount namespaces (CI runs as root): {PROBLEM}")

HANDLERS = Gate.handler_snippet + '''
import errno, json, os

def _tmp():
    return sorted(os.listdir("/tmp"))

def hold(event, context):
    name = f"/tmp/{context.aws_request_id}"
    with open(name, "w") as f:
        f.write("mine")
    wait_at_gate(context)
    return {"wrote": os.path.basename(name), "tmp": _tmp()}

def write(event, context):
    if event.get("write"):
        with open("/tmp/mark", "w") as f:
            f.write("x")
    return {"tmp": _tmp()}

def look(event, context):
    st = os.statvfs("/tmp")
    tmp_type = [line.split()[2] for line in open("/proc/self/mounts") if line.split()[1] == "/tmp"]
    try:
        open(os.path.join(os.environ["LAMBDA_TASK_ROOT"], "new.txt"), "w").close()
        write_error = None
    except OSError as exc:
        write_error = errno.errorcode[exc.errno]
    seen = event.get("host_file")
    return {
        "tmp": _tmp(), "tmp_type": tmp_type, "tmp_bytes": st.f_blocks * st.f_frsize,
        "task_root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd(), "file": __file__,
        "code": sorted(os.listdir(os.environ["LAMBDA_TASK_ROOT"])), "write_error": write_error,
        "sees_host_file": os.path.exists(seen) if seen else None,
    }
'''


@pytest.fixture
def code(tmp_path):
    return write_function(tmp_path / "fn", HANDLERS)


@pytest.fixture
def host_file():
    """A file in the host's /tmp, removed afterwards whatever happens."""
    path = f"/tmp/lambdalet-isolation-{uuid.uuid4().hex}"
    with open(path, "w") as f:
        f.write("host")
    yield path
    os.remove(path)


def function(code, name, handler, gate=None, env=(), **settings) -> FunctionConfig:
    env = {**({"GATE_PORT": str(gate.port)} if gate is not None else {}), **dict(env)}
    return FunctionConfig(name=name, code=str(code), handler=f"app.{handler}", env=env, **settings)


async def call(server, name, event=None) -> dict:
    result = await server.invoke(name, json.dumps(event or {}).encode())
    return json.loads(result.payload)


async def test_two_environments_cannot_see_each_others_tmp(code, gate):
    async with running_server(function(code, "pair", "hold", gate, concurrency=2, isolation="standard")) as server:
        results = []
        async with trio.open_nursery() as callers:
            async def invoke():
                results.append(await call(server, "pair"))

            callers.start_soon(invoke)
            callers.start_soon(invoke)
            await gate.wait_arrivals(2)  # both environments have written their file, and wait
            await gate.release_all()

    assert len(results) == 2 and results[0]["wrote"] != results[1]["wrote"]
    assert [r["tmp"] for r in results] == [[r["wrote"]] for r in results]


async def test_a_file_in_tmp_is_gone_when_the_environment_is_replaced(code):
    async with running_server(function(code, "writer", "write", isolation="standard")) as server:
        assert (await call(server, "writer", {"write": True}))["tmp"] == ["mark"]
        assert (await call(server, "writer"))["tmp"] == ["mark"]  # a warm environment keeps it
        (first,) = server.functions["writer"].environments
        first.shutdown()
        await first.closed.wait()

        assert (await call(server, "writer"))["tmp"] == []
        assert first not in server.functions["writer"].environments


async def test_tmp_is_a_private_tmpfs_of_the_ephemeral_storage(code, host_file):
    async with running_server(function(code, "sized", "look", ephemeral_storage=600, isolation="standard")) as server:
        seen = await call(server, "sized", {"host_file": host_file})

    assert seen["tmp"] == []
    assert seen["tmp_type"] == ["tmpfs"]
    assert seen["tmp_bytes"] == 600 << 20
    assert seen["sees_host_file"] is False


async def test_code_is_read_only_at_var_task(code):
    async with running_server(function(code, "task", "look", isolation="standard")) as server:
        seen = await call(server, "task")

    assert (seen["task_root"], seen["cwd"], seen["file"]) == ("/var/task", "/var/task", "/var/task/app.py")
    assert "app.py" in seen["code"]
    assert seen["write_error"] == "EROFS"
    assert not (code / "new.txt").exists()


async def test_the_host_keeps_its_tmp_and_its_mounts(code, gate, host_file):
    before = mountinfo()
    async with running_server(function(code, "held", "hold", gate, isolation="standard")) as server:
        async with trio.open_nursery() as callers:
            results = []

            async def invoke():
                results.append(await call(server, "held"))

            callers.start_soon(invoke)
            (line,) = await gate.wait_arrivals(1)
            written = f"/tmp/{line.split()[0]}"
            assert mountinfo() == before  # the environment's mounts are in its own namespace
            assert not os.path.exists(written)
            await gate.release_all()

    assert results[0]["tmp"] == [os.path.basename(written)]
    assert mountinfo() == before
    assert not os.path.exists(written)
    with open(host_file) as f:
        assert f.read() == "host"


async def test_a_runtime_that_lives_in_the_hosts_tmp_still_starts(tmp_path):
    code = write_function(tmp_path / "my code", HANDLERS)
    runtime = lambdalet_runtime(tmp_path / "my runtime")
    config = function(code, "own", "look", isolation="standard", runtime=[str(runtime)],
                      env={"LAMBDALET_PYTHON": BASE_PYTHON, "LAMBDALET_HOME": str(runtime.parent / "lambdalet")})
    async with running_server(config) as server:
        seen = await call(server, "own")

    assert (seen["task_root"], seen["cwd"]) == ("/var/task", "/var/task")
    assert seen["tmp"] == [str(tmp_path).split("/")[2]]  # only the way to the runtime, bound back


async def test_none_keeps_a_plain_process(code, host_file):
    async with running_server(function(code, "plain", "look", isolation="none")) as server:
        seen = await call(server, "plain", {"host_file": host_file})
        (env,) = server.functions["plain"].environments

        assert env.cgroup is None
    assert (seen["task_root"], seen["cwd"], seen["file"]) == (str(code), str(code), str(code / "app.py"))
    assert seen["sees_host_file"] is True


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to become nobody with user namespaces refused")
def test_an_unprivileged_host_without_user_namespaces_degrades_and_says_why():
    script = (
        "import os; from sandbox import host; from sandbox.isolation import Isolation\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "print(*host.isolation(None), *host.isolation(Isolation.STANDARD))\n"
    )
    run = subprocess.run(without_user_namespaces([sys.executable, "-c", script]), capture_output=True, text=True,
                         cwd=REPO)

    reason = "user namespaces are not allowed to this user: user.max_user_namespaces is 0"
    assert (run.returncode, run.stdout) == (0, "none False standard False\n"), run.stderr
    assert f"isolation standard is not permitted here ({reason}): environments run at none" in run.stderr
    assert f"no private /tmp nor read-only /var/task ({reason})" in run.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to become nobody")
def test_an_unprivileged_host_gets_standard_through_user_namespaces():
    if host.mount_namespace_problem() is not None:  # as root: /var/task made if missing
        pytest.skip(f"no mount namespaces here: {host.mount_namespace_problem()}")
    script = (
        "import os; from sandbox import host; from sandbox.isolation import Isolation\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "print(*host.isolation(None), *host.isolation(Isolation.STANDARD))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=REPO)

    assert (run.returncode, run.stdout) == (0, "standard True standard True\n"), run.stderr
    assert "/tmp" not in run.stderr  # nothing said about the private /tmp: it is there

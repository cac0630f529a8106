"""runtime_api.function: a function's pool of execution environments, as the invocations see it.
An idle environment is reused warm, the most recently used first; a new one starts when none is
idle; past the concurrency limit a synchronous caller gets 429 while an asynchronous invocation
waits for a slot; provisioned environments are kept when idle; an environment whose runtime died
is replaced, never reused; under SnapStart by fork the next environment is staged ahead.

Which environment served an invocation is the pid its handler reports. An environment is idle
again once its REPORT line is written: Lambda writes it when the runtime asks for its next event.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import trio

from helpers import CapturedLog, Gate, awslambdaric_function, running_server, write_function
from runtime_api import FunctionConfig, ServiceError

HANDLERS = Gate.handler_snippet + '''
import os

def handler(event, context):
    if event.get("hold"):
        wait_at_gate(context, str(os.getpid()))
    if event.get("exit"):
        os._exit(3)
    return {"pid": os.getpid()}
'''

HOLD = b'{"hold": true}'


class Reports(CapturedLog):
    """The server's log, and an event for each REPORT line written to it."""

    def __init__(self) -> None:
        super().__init__()
        self._written = trio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        self._written.set()
        self._written = trio.Event()

    async def reported(self, request_id: str) -> None:
        """Returns once the invocation's REPORT line is written."""
        with trio.fail_after(60):  # only so that a missing line fails the test instead of hanging it
            while f"REPORT RequestId: {request_id}\t" not in self.text:
                await self._written.wait()


@pytest.fixture
def code(tmp_path):
    return write_function(tmp_path / "fn", HANDLERS)


def function(code, gate, **settings) -> FunctionConfig:
    return awslambdaric_function("fn", code, "app.handler", env={"GATE_PORT": str(gate.port)}, **settings)


def arrived(line: str) -> tuple[str, int]:
    """(request id, pid) of an invocation waiting at the gate."""
    request_id, pid = line.split()
    return request_id, int(pid)


async def pid_of(server, payload: bytes = b"{}") -> int:
    result = await server.invoke("fn", payload)
    assert result.function_error is None, result.payload
    return json.loads(result.payload)["pid"]


async def test_an_idle_environment_is_reused_warm(code, gate):
    reports = Reports()
    async with running_server(function(code, gate), sink=reports) as server:
        first = await server.invoke("fn")
        await reports.reported(first.request_id)
        assert await pid_of(server) == json.loads(first.payload)["pid"]
        assert len(server.functions["fn"].environments) == 1
    assert reports.text.count("Init Duration") == 1  # one init, for the first invocation


async def test_of_two_idle_environments_the_most_recently_used_is_taken(code, gate):
    reports = Reports()
    async with running_server(function(code, gate, concurrency=2), sink=reports) as server:
        async with trio.open_nursery() as callers:
            callers.start_soon(server.invoke, "fn", HOLD)
            callers.start_soon(server.invoke, "fn", HOLD)
            first, second = [arrived(line) for line in await gate.wait_arrivals(2)]
            assert first[1] != second[1]  # two environments
            for request_id, pid in (first, second):  # idle in this order: the second last
                await gate.answer(f"{request_id} {pid}", b"go")
                await reports.reported(request_id)
        third = await server.invoke("fn")
        assert json.loads(third.payload)["pid"] == second[1]
        await reports.reported(third.request_id)
        assert await pid_of(server) == second[1]  # and again: the other one stays idle
        assert {env.pid for env in server.functions["fn"].environments} == {first[1], second[1]}


async def test_a_new_environment_starts_when_none_is_idle(code, gate):
    async with running_server(function(code, gate, concurrency=3)) as server:
        async with trio.open_nursery() as callers:
            for _ in range(3):
                callers.start_soon(server.invoke, "fn", HOLD)
            pids = {arrived(line)[1] for line in await gate.wait_arrivals(3)}
            assert len(pids) == 3
            assert {env.pid for env in server.functions["fn"].environments} == pids
            await gate.release_all()


async def test_past_the_concurrency_limit_a_caller_gets_429_and_no_environment_starts(code, gate):
    async with running_server(function(code, gate, concurrency=1)) as server:
        async with trio.open_nursery() as callers:
            callers.start_soon(server.invoke, "fn", HOLD)
            ((_, busy),) = [arrived(line) for line in await gate.wait_arrivals(1)]
            with pytest.raises(ServiceError) as refused:
                await server.invoke("fn")
            assert (refused.value.status, refused.value.error_type) == (429, "TooManyRequestsException")
            assert refused.value.extra == {"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"}
            assert [env.pid for env in server.functions["fn"].environments] == [busy]
            await gate.release_all()


async def test_an_asynchronous_invocation_waits_for_a_slot_instead_of_429(code, gate):
    async with running_server(function(code, gate, concurrency=1)) as server:
        async with trio.open_nursery() as callers:
            callers.start_soon(server.invoke, "fn", HOLD)
            (first,) = [arrived(line) for line in await gate.wait_arrivals(1)]
            queued = await server.invoke("fn", HOLD, invocation_type="Event")
            assert queued.status_code == 202
            await gate.answer(f"{first[0]} {first[1]}", b"go")
            # It ran once the first had finished, in the environment the first had.
            (second,) = [arrived(line) for line in await gate.wait_arrivals(1)]
            assert second == (queued.request_id, first[1])
            await gate.release_all()
        assert len(server.functions["fn"].environments) == 1


async def test_provisioned_environments_are_kept_when_idle(code, gate):
    reports = Reports()
    config = function(code, gate, concurrency=2, provisioned=1, idle_timeout=0.2)
    async with running_server(config, sink=reports) as server:
        fn = server.functions["fn"]
        (provisioned,) = fn.environments
        async with trio.open_nursery() as callers:
            callers.start_soon(server.invoke, "fn", HOLD)
            callers.start_soon(server.invoke, "fn", HOLD)
            held = [arrived(line) for line in await gate.wait_arrivals(2)]
            (on_demand_pid,) = {pid for _, pid in held} - {provisioned.pid}  # the provisioned one took the first
            (on_demand,) = [env for env in fn.environments if env.pid == on_demand_pid]
            # The provisioned environment goes idle first, the on-demand one after it.
            for request_id, pid in sorted(held, key=lambda arrival: arrival[1] != provisioned.pid):
                await gate.answer(f"{request_id} {pid}", b"go")
                await reports.reported(request_id)
        with trio.fail_after(60):
            await on_demand.closed.wait()  # reaped after its idle timeout
        assert fn.environments == {provisioned} and provisioned.alive
        assert await pid_of(server) == provisioned.pid


async def test_an_environment_whose_runtime_exited_is_replaced_not_reused(code, gate):
    async with running_server(function(code, gate)) as server:
        fn = server.functions["fn"]
        before = await pid_of(server)
        (dead,) = fn.environments
        crashed = await server.invoke("fn", b'{"exit": true}')
        assert json.loads(crashed.payload)["errorType"] == "Runtime.ExitError"
        after = await pid_of(server)
        assert after != before
        await dead.closed.wait()
        assert [env.pid for env in fn.environments] == [after]


async def test_an_idle_environment_whose_runtime_was_killed_is_replaced(code, gate):
    reports = Reports()
    async with running_server(function(code, gate), sink=reports) as server:
        fn = server.functions["fn"]
        first = await server.invoke("fn")
        await reports.reported(first.request_id)
        (killed,) = fn.environments
        os.kill(killed.pid, signal.SIGKILL)
        await killed.closed.wait()
        assert await pid_of(server) != json.loads(first.payload)["pid"]
        assert killed not in fn.environments


async def test_an_invocation_right_after_an_idle_runtime_died_goes_to_a_new_environment(code, gate):
    """The runtime is dead (the kernel says so) but the server has not yet run the task that
    notices: the invocation still gets a live environment, not Runtime.ExitError."""
    reports = Reports()
    async with running_server(function(code, gate), sink=reports) as server:
        first = await server.invoke("fn")
        await reports.reported(first.request_id)
        (killed,) = server.functions["fn"].environments
        os.kill(killed.pid, signal.SIGKILL)
        os.waitid(os.P_PID, killed.pid, os.WEXITED | os.WNOWAIT)  # blocks without a checkpoint: no task runs
        assert killed.alive  # not noticed yet
        again = await server.invoke("fn")
        assert again.function_error is None
        assert json.loads(again.payload)["pid"] != killed.pid


async def test_under_snapstart_the_next_environment_is_staged_ahead(tmp_path):
    write_function(tmp_path, "import os\n\ndef handler(event, context):\n    return {'pid': os.getpid()}\n")
    config = FunctionConfig(name="fn", code=str(tmp_path), handler="app.handler", snapstart=True)
    async with running_server(config) as server:
        fn = server.functions["fn"]
        staged = await fn.wait_staged()
        assert await pid_of(server) == staged.pid  # the invocation took the staged copy
        with trio.fail_after(60):
            again = await fn.wait_staged()  # and another copy is staged for the next one
        assert again is not staged and again.pid != staged.pid


async def test_with_tenant_isolation_an_environment_serves_one_tenant_only(tmp_path):
    code = write_function(tmp_path / "fn", "import os\ndef handler(event, context):\n    return os.getpid()\n")
    async with running_server(FunctionConfig(name="fn", code=str(code), tenancy="PER_TENANT")) as server:
        async def pid(tenant):
            return int((await server.invoke("fn", tenant_id=tenant)).payload)

        blue = await pid("blue")
        green = await pid("green")  # blue's environment is idle, but not green's to take
        assert blue != green
        assert [await pid("blue"), await pid("green")] == [blue, green]  # each back to its own, warm

"""Lambda's CPU model (`--cpu-model lambda`, `cpu_model = "lambda"`): an environment gets CPU in
proportion to its memory, 1,769 MB = one vCPU, through a cgroup v1 CFS quota, so a 128 MB function
runs as slowly as on Lambda; by default (`host`) its runtime has no CPU limit of its own.

What the runtime gets is read from the cgroup files its /proc/<pid>/cgroup names; that it is held
back is the cgroup's own `nr_throttled` counter, never a timing. Needs root with writable cgroup
v1 cpu, memory and pids hierarchies (CI runs as root)."""

from __future__ import annotations

import json
import os

import pytest

from helpers import running_server, write_function
from runtime_api import FunctionConfig
from runtime_api.cli import build_parser, serve_config
from runtime_api.config import ConfigError, load_config
from sandbox import cgroups
from sandbox.cgroups import CpuModel, lambda_cpu_quota_us
from sandbox.isolation import Isolation

SUPPORT = cgroups.detect() if os.geteuid() == 0 else cgroups.CgroupSupport()
needs_cgroups = pytest.mark.skipif(
    not (SUPPORT.cpu and SUPPORT.memory and SUPPORT.pids),
    reason="needs root with writable cgroup v1 cpu, memory and pids hierarchies (CI runs as root)",
)

HANDLERS = '''
import os, time

def whoami(event, context):
    return {"pid": os.getpid()}

def spin(event, context):
    """CPU-bound: burns `cpu_ms` of CPU time, however long that takes on the wall clock."""
    started = time.process_time()
    while time.process_time() - started < event["cpu_ms"] / 1000:
        pass
    return {"pid": os.getpid()}
'''


@pytest.fixture(autouse=True)
def no_leftover_cgroups():
    yield
    prefix = f"{cgroups.PREFIX}{os.getpid()}-"
    assert [e for d in SUPPORT.directories() for e in os.listdir(d) if e.startswith(prefix)] == []


def test_lambda_quota_is_proportional_to_memory():
    assert [lambda_cpu_quota_us(mb) for mb in (128, 1769, 3538, 10240)] == [7236, 100000, 200000, 578858]
    assert lambda_cpu_quota_us(1) == 1000  # the kernel's floor


def test_cpu_model_from_the_command_line_and_the_config_file(tmp_path):
    assert serve_config(build_parser().parse_args(["serve"])).function[0].cpu_model is CpuModel.HOST
    args = build_parser().parse_args(["serve", "--cpu-model", "lambda"])
    assert serve_config(args).function[0].cpu_model is CpuModel.LAMBDA

    config = tmp_path / "functions.toml"
    config.write_text('[[function]]\nname = "a"\ncpu_model = "lambda"\n\n[[function]]\nname = "b"\n')
    assert [f.cpu_model for f in load_config(config).function] == [CpuModel.LAMBDA, CpuModel.HOST]
    # Given on the command line with --config: for every function.
    args = build_parser().parse_args(["serve", "--config", str(config), "--cpu-model", "host"])
    assert [f.cpu_model for f in serve_config(args).function] == [CpuModel.HOST, CpuModel.HOST]

    config.write_text('[[function]]\nname = "a"\ncpu_model = "fast"\n')
    with pytest.raises(ConfigError, match="cpu_model"):
        load_config(config)


def cgroup_of(pid: int, controller: str) -> str:
    """The directory of `pid`'s cgroup in `controller`'s v1 hierarchy."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return path
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def cpu_file(pid: int, name: str) -> str:
    with open(os.path.join(_cpu_mount(), cgroup_of(pid, "cpu").lstrip("/"), name)) as f:
        return f.read()


def _cpu_mount() -> str:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, where, kind, options, *_ = line.split()
            if kind == "cgroup" and "cpu" in options.split(","):
                return where
    raise AssertionError("no cgroup v1 cpu hierarchy mounted")


def throttled(pid: int) -> int:
    stat = dict(line.split() for line in cpu_file(pid, "cpu.stat").splitlines())
    return int(stat["nr_throttled"])


@needs_cgroups
async def test_lambda_cpu_model_holds_a_128_mb_function_to_its_share_of_one_cpu(tmp_path):
    code = write_function(tmp_path / "fn", HANDLERS)
    lambda_128 = FunctionConfig(name="small", code=str(code), handler="app.spin", memory=128, timeout=60,
                                isolation=Isolation.STANDARD, cpu_model=CpuModel.LAMBDA)
    lambda_1769 = FunctionConfig(name="onecpu", code=str(code), handler="app.whoami", memory=1769,
                                 isolation=Isolation.STANDARD, cpu_model="lambda")
    async with running_server(lambda_128, lambda_1769) as server:
        result = await server.invoke("small", b'{"cpu_ms": 100}')
        assert result.function_error is None
        pid = json.loads(result.payload)["pid"]  # the environment stays warm: its cgroup is there

        assert cgroup_of(pid, "cpu") != cgroup_of(os.getpid(), "cpu")
        assert (cpu_file(pid, "cpu.cfs_period_us"), cpu_file(pid, "cpu.cfs_quota_us")) == ("100000\n", "7236\n")
        # 100 ms of CPU against 7.2 ms per 100 ms period: held back, by the kernel's own count.
        assert throttled(pid) > 0

        other = json.loads((await server.invoke("onecpu")).payload)["pid"]
        assert cpu_file(other, "cpu.cfs_quota_us") == "100000\n"


@needs_cgroups
async def test_by_default_the_runtime_has_no_cpu_limit_of_its_own(tmp_path):
    code = write_function(tmp_path / "fn", HANDLERS)
    default = FunctionConfig(name="default", code=str(code), handler="app.whoami", isolation=Isolation.STANDARD)
    async with running_server(default) as server:
        pid = json.loads((await server.invoke("default")).payload)["pid"]

        # In the server's own cpu cgroup, while its memory cgroup is its environment's.
        assert cgroup_of(pid, "cpu") == cgroup_of(os.getpid(), "cpu")
        assert cgroup_of(pid, "memory") != cgroup_of(os.getpid(), "memory")

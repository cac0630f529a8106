"""Layers (issue 4): a function's layers at /opt as Lambda shows them (later layers win, read-only),
found through /opt/python, /opt/bin on PATH and /opt/bootstrap; their directories on the search
paths where /opt cannot be shown (isolation none); the configuration's checks; a SnapStart
template rebuilt when a layer changes; nothing left mounted on the host.

The /opt tests make real mounts (a private mount namespace per environment): they need root, as
CI has."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from helpers import BASE_PYTHON, lambdalet_runtime, running_server, write_function
from runtime_api import FunctionConfig
from runtime_api.cli import build_parser, serve_config
from runtime_api.config import ConfigError, load_config
from sandbox import host
from sandbox.isolation import Isolation

PROBLEM = host.mount_namespace_problem() if os.geteuid() == 0 else "not root"
needs_mounts = pytest.mark.skipif(
    PROBLEM is not None, reason=f"/opt is shown in a private mount namespace: needs root (CI runs as root): {PROBLEM}")

HANDLER = '''
import errno, os, subprocess

def handler(event, context):
    import layered  # /opt/python (or, at isolation none, a layer's python directory)
    seen = {"module": layered.WHO,
            "tool": subprocess.run(["layer-tool"], capture_output=True, text=True).stdout.strip(),
            "PATH": os.environ["PATH"], "LD_LIBRARY_PATH": os.environ["LD_LIBRARY_PATH"],
            "PYTHONPATH": os.environ.get("PYTHONPATH")}
    if event.get("opt"):
        seen["shared"] = open("/opt/shared.txt").read()
        seen["first_only"] = open("/opt/first.txt").read()
        seen["opt_fstype"] = [line.split()[2] for line in open("/proc/self/mounts") if line.split()[1] == "/opt"]
        for name in ("/opt/new.txt", "/opt/shared.txt"):
            try:
                open(name, "a").close()
                seen.setdefault("write", []).append(None)
            except OSError as exc:
                seen.setdefault("write", []).append(errno.errorcode[exc.errno])
    return seen
'''


def make_layer(directory: Path, who: str, *, first: bool = False) -> Path:
    """A layer as its zip would extract: python/layered.py, an executable bin/layer-tool and a
    data file, each saying which layer it is from."""
    (directory / "python").mkdir(parents=True)
    (directory / "python" / "layered.py").write_text(f"WHO = {who!r}\n")
    (directory / "bin").mkdir()
    tool = directory / "bin" / "layer-tool"
    tool.write_text(f"#!/bin/sh\necho {who}\n")
    tool.chmod(0o755)
    (directory / "lib").mkdir()
    (directory / "shared.txt").write_text(who)
    if first:
        (directory / "first.txt").write_text("only in the first layer")
    return directory


def mounts() -> set[str]:
    with open("/proc/self/mounts") as f:
        return set(f)


async def invoke_json(server, payload: dict, name: str = "layered") -> dict:
    result = await server.invoke(name, json.dumps(payload).encode())
    assert result.function_error is None, result.payload
    return json.loads(result.payload)


# -- at /opt ---------------------------------------------------------------------------------------

@needs_mounts
@pytest.mark.parametrize("isolation", [Isolation.STANDARD, Isolation.STRICT])
async def test_two_layers_are_overlaid_at_opt_read_only_the_later_winning(tmp_path, isolation):
    code = write_function(tmp_path / "code", HANDLER)
    first = make_layer(tmp_path / "first", "first", first=True)
    second = make_layer(tmp_path / "second", "second")
    before = mounts()
    function = FunctionConfig(name="layered", code=str(code), isolation=isolation,
                              layers=[str(first), str(second)])
    async with running_server(function) as server:
        seen = await invoke_json(server, {"opt": True})
    assert seen["module"] == "second"  # /opt/python/layered.py is the later layer's
    assert seen["tool"] == "second"  # found as layer-tool through PATH's /opt/bin
    assert seen["shared"] == "second"
    assert seen["first_only"] == "only in the first layer"  # a union: the earlier layer's other files stay
    assert seen["opt_fstype"] == ["overlay"]
    assert seen["write"] == ["EROFS", "EROFS"]
    # As Lambda's Python runtimes: /opt/bin ends PATH, /opt/lib ends LD_LIBRARY_PATH, and PYTHONPATH
    # is the runtime directory (for child processes; /opt/python is on sys.path, not there).
    assert seen["PATH"].endswith(":/opt/bin")
    assert seen["LD_LIBRARY_PATH"].endswith(":/var/task/lib:/opt/lib")
    assert seen["PYTHONPATH"] == "/var/runtime"
    assert mounts() == before  # nothing was mounted on the host, nothing is left
    assert not os.path.exists("/opt/layered.py") and not os.path.exists("/opt/shared.txt")


@needs_mounts
async def test_one_layer_is_bound_read_only_at_opt(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    only = make_layer(tmp_path / "only", "only", first=True)
    before = mounts()
    async with running_server(FunctionConfig(name="layered", code=str(code), isolation=Isolation.STANDARD,
                                             layers=[str(only)])) as server:
        seen = await invoke_json(server, {"opt": True})
    assert (seen["module"], seen["tool"], seen["shared"]) == ("only", "only", "only")
    assert seen["opt_fstype"] != ["overlay"] and len(seen["opt_fstype"]) == 1  # the layer's own file system
    assert seen["write"] == ["EROFS", "EROFS"]
    assert mounts() == before


@needs_mounts
async def test_a_custom_runtime_at_opt_bootstrap_in_a_layer(tmp_path):
    """A layer that brings the runtime (Lambda's /opt/bootstrap) and all it needs but its
    interpreter: lambdalet's runtime client as bootstrap/README.md packs it, at /opt/lambdalet."""
    code = write_function(tmp_path / "code", HANDLER)
    runtime = make_layer(tmp_path / "runtime", "runtime")
    lambdalet_runtime(runtime)
    function = FunctionConfig(name="layered", code=str(code), isolation=Isolation.STANDARD, layers=[str(runtime)],
                              runtime=["/opt/bootstrap"],
                              env={"LAMBDALET_PYTHON": BASE_PYTHON, "LAMBDALET_HOME": "/opt/lambdalet"})
    async with running_server(function) as server:
        seen = await invoke_json(server, {})
    assert seen["module"] == "runtime"


@needs_mounts
async def test_provided_runs_the_layers_bootstrap_when_the_code_has_none(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    runtime = make_layer(tmp_path / "runtime", "runtime")
    lambdalet_runtime(runtime)
    function = FunctionConfig(name="layered", code=str(code), isolation=Isolation.STANDARD, layers=[str(runtime)],
                              runtime_id="provided.al2023",
                              env={"LAMBDALET_PYTHON": BASE_PYTHON, "LAMBDALET_HOME": "/opt/lambdalet"})
    async with running_server(function) as server:
        seen = await invoke_json(server, {})
    assert seen["module"] == "runtime"


# -- isolation none --------------------------------------------------------------------------------

async def test_at_isolation_none_the_layers_directories_stand_in_for_opt(tmp_path, caplog):
    code = write_function(tmp_path / "code", HANDLER)
    first = make_layer(tmp_path / "first", "first")
    second = make_layer(tmp_path / "second", "second")
    function = FunctionConfig(name="layered", code=str(code), isolation=Isolation.NONE,
                              layers=[str(first), str(second)])
    with caplog.at_level(logging.WARNING, logger="lambdalet"):
        async with running_server(function) as server:
            seen = await invoke_json(server, {})
    assert (seen["module"], seen["tool"]) == ("second", "second")  # the later layer first, as at /opt
    assert seen["PATH"].endswith(f":{second}/bin:{first}/bin")
    assert seen["LD_LIBRARY_PATH"].endswith(f":{second}/lib:{first}/lib")
    assert seen["PYTHONPATH"] == f"{second}/python:{first}/python"
    said = [r.getMessage() for r in caplog.records if "layers" in r.getMessage()]
    assert len(said) == 1 and "PYTHONPATH" in said[0]


# -- configuration -------------------------------------------------------------------------------------

def test_layers_in_the_config_file_are_relative_to_it_and_checked(tmp_path):
    make_layer(tmp_path / "l1", "1")
    config = tmp_path / "lambdalet.toml"
    config.write_text('[[function]]\nname = "f"\nlayers = ["./l1"]\n')
    assert load_config(config).function[0].layers == [str(tmp_path / "l1")]
    config.write_text('[[function]]\nname = "f"\nlayers = ["./l1", "./missing"]\n')
    with pytest.raises(ConfigError, match="missing is not a directory"):
        load_config(config)
    config.write_text('[[function]]\nname = "f"\nlayers = ["./l1", "./l1", "./l1", "./l1", "./l1", "./l1"]\n')
    with pytest.raises(ConfigError, match="6 layers; Lambda allows at most 5"):
        load_config(config)


def test_layer_flags_on_the_command_line(tmp_path):
    make_layer(tmp_path / "l1", "1")
    make_layer(tmp_path / "l2", "2")
    args = build_parser().parse_args(["serve", "--layer", str(tmp_path / "l1"), "--layer", str(tmp_path / "l2")])
    assert serve_config(args).function[0].layers == [str(tmp_path / "l1"), str(tmp_path / "l2")]
    with pytest.raises(ConfigError, match="not a directory"):
        serve_config(build_parser().parse_args(["serve", "--layer", str(tmp_path / "nope")]))
    with pytest.raises(ConfigError, match="at most 5"):
        serve_config(build_parser().parse_args(["serve", *["--layer", str(tmp_path / "l1")] * 6]))
    config = tmp_path / "lambdalet.toml"
    config.write_text('[[function]]\nname = "f"\nlayers = ["./l1"]\n')
    args = build_parser().parse_args(["serve", "--config", str(config), "--layer", str(tmp_path / "l2")])
    assert serve_config(args).function[0].layers == [str(tmp_path / "l1"), str(tmp_path / "l2")]


# -- SnapStart -------------------------------------------------------------------------------------

async def test_the_snapstart_template_is_rebuilt_when_a_layer_changes(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    layer = make_layer(tmp_path / "layer", "v1")
    function = FunctionConfig(name="layered", code=str(code), snapstart=True, layers=[str(layer)])
    async with running_server(function) as server:
        template = server.functions["layered"].template
        assert (await invoke_json(server, {}))["module"] == "v1"
        server.functions["layered"].shutdown()  # the next invocation needs a new copy
        assert (await invoke_json(server, {}))["module"] == "v1"
        assert template.builds == 1
        (layer / "python" / "layered.py").write_text("WHO = 'v2'\n")
        server.functions["layered"].shutdown()
        assert (await invoke_json(server, {}))["module"] == "v2"
        assert template.builds == 2

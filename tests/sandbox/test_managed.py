"""Managed runtimes as a function sees them (issue 13): the import path Lambda gives and nothing more,
the exact Python version, the runtime's environment variables, the bundled SDK, Node.js, the OS-only
runtimes, and the clear errors when a runtime cannot run here.

The /var/lang and /var/runtime tests make real mounts (a private mount namespace per environment):
they need root, as CI has. A Python version that is not on this machine skips its test, naming it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import BASE_PYTHON, REPO, CapturedLog, lambdalet_runtime, running_server, write_function
from runtime_api import FunctionConfig
from runtime_api.cli import build_parser, serve_config
from runtime_api.cli import main as cli_main
from runtime_api.config import ConfigError, load_config
from sandbox import host
from sandbox.interpreters import InterpreterMissing, ask_python, find_node, find_python
from sandbox.isolation import Isolation
from sandbox.runtimes import PYTHON_SDK, RUNTIMES

PROBLEM = host.mount_namespace_problem() if os.geteuid() == 0 else "not root"
needs_mounts = pytest.mark.skipif(
    PROBLEM is not None, reason=f"/var/lang and /var/runtime are shown in a private mount namespace: needs root "
                                f"(CI runs as root): {PROBLEM}")

HANDLER = '''
import json, os, sys

def look(event, context):
    if "module" in event:
        return use(event, context)
    return {"path": sys.path, "version": list(sys.version_info[:2]), "executable": sys.executable,
            "argv": sys.argv, "tmp": sorted(os.listdir("/tmp")), "env": dict(os.environ),
            "finders": [type(f).__name__ for f in sys.meta_path], "exit": callable(__builtins__["exit"])
            if isinstance(__builtins__, dict) else callable(__builtins__.exit)}

def use(event, context):
    module = __import__(event["module"])
    return {"file": module.__file__, "version": getattr(module, "__version__", None)}
'''


def python(minor: str) -> str:
    """The runtime python`minor`, or a skip naming the version that is not on this machine."""
    try:
        find_python(minor)
    except InterpreterMissing as exc:
        pytest.skip(f"Python {minor} is not on this machine ({exc})")
    return f"python{minor}"


async def invoke(server, name: str, event: dict | None = None) -> tuple[str | None, dict]:
    result = await server.invoke(name, json.dumps(event or {}).encode())
    return result.function_error, json.loads(result.payload)


def lambda_sys_path(minor: str) -> list[str]:
    """sys.path of Lambda's python3.11 and later runtimes, as a handler prints it there (the 3.13 one
    published in public logs; 3.11's and 3.12's have the same shape): the code, the layers' two
    directories, the runtime-included libraries ahead of /var/runtime, the standard library, then
    what `site` and bootstrap.py's addsitedir append (the /opt directories again, as they do not
    exist)."""
    lib = f"/var/lang/lib/python{minor}"
    layers = [f"/opt/python/lib/python{minor}/site-packages", "/opt/python"]
    return ["/var/task", *layers, f"{lib}/site-packages", "/var/runtime", f"/var/lang/lib/python{minor.replace('.', '')}.zip",
            lib, f"{lib}/lib-dynload", f"{lib}/site-packages", *layers]


# -- the import path ------------------------------------------------------------------------------

@needs_mounts
@pytest.mark.parametrize("minor", ["3.11", "3.12", "3.13"])
async def test_sys_path_version_and_execution_env_are_lambdas(tmp_path, minor):
    code = write_function(tmp_path / "code", HANDLER)
    config = FunctionConfig(name="f", code=str(code), handler="app.look", runtime_id=python(minor))
    async with running_server(config) as server:
        error, seen = await invoke(server, "f")

    assert error is None, seen
    assert seen["path"] == lambda_sys_path(minor)
    assert seen["version"] == [int(part) for part in minor.split(".")]
    assert seen["env"]["AWS_EXECUTION_ENV"] == f"AWS_Lambda_python{minor}"
    assert (seen["executable"], seen["argv"]) == (f"/var/lang/bin/python{minor}", ["/var/runtime/bootstrap.py"])
    assert "_EditableFinder" not in " ".join(seen["finders"])  # no import hook of lambdalet's install
    assert seen["tmp"] == []  # wherever lambdalet, its virtualenv and the interpreter live
    assert seen["exit"]  # what `site` gives the builtins, though the runtime starts without it


@needs_mounts
async def test_a_system_python_stays_where_it_is_and_sees_none_of_the_systems_packages(tmp_path):
    """A Python of the system's (/usr/bin/python3.X, Debian's) is not shown at /var/lang: that would
    move /usr/bin and the rest of the system's directories on Lambda's PATH."""
    system = ask_python("/usr/bin/python3") if os.path.exists("/usr/bin/python3") else None
    if system is None or system.prefix is not None or not system.executable.startswith("/usr/"):
        pytest.skip("no system Python in /usr/bin here")
    minor = "{}.{}".format(*system.version[:2])
    if f"python{minor}" not in RUNTIMES:
        pytest.skip(f"the system's Python {minor} is no Lambda runtime's")
    code = write_function(tmp_path / "code", HANDLER)
    config = FunctionConfig(name="f", code=str(code), handler="app.look", runtime_id=f"python{minor}",
                            interpreters={minor: "/usr/bin/python3"})
    async with running_server(config) as server:
        error, seen = await invoke(server, "f")

    assert error is None, seen
    assert seen["executable"] == system.executable and seen["env"]["PATH"] == "/usr/local/bin:/usr/bin/:/bin:/opt/bin"
    assert not [entry for entry in seen["path"] if "dist-packages" in entry]
    assert seen["path"][:3] == ["/var/task", f"/opt/python/lib/python{minor}/site-packages", "/opt/python"]
    assert f"/libraries/python{minor}-" in seen["path"][3] and seen["path"][4] == "/var/runtime"  # the SDK: its host path


@needs_mounts
async def test_the_environment_variables_are_the_managed_runtimes(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    minor = "{}.{}".format(*sys.version_info[:2])
    async with running_server(FunctionConfig(name="f", code=str(code), handler="app.look")) as server:
        error, seen = await invoke(server, "f")

    assert error is None, seen
    env = seen["env"]
    # The AWS Lambda Developer Guide's "Defined runtime environment variables", with python3.X's image.
    assert {key: env[key] for key in ("PATH", "LD_LIBRARY_PATH", "LANG", "TZ", "LAMBDA_TASK_ROOT",
                                      "LAMBDA_RUNTIME_DIR", "PYTHONPATH", "AWS_EXECUTION_ENV")} == {
        "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LD_LIBRARY_PATH": "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:"
                           "/opt/lib",
        "LANG": "en_US.UTF-8", "TZ": ":UTC", "LAMBDA_TASK_ROOT": "/var/task", "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "PYTHONPATH": "/var/runtime", "AWS_EXECUTION_ENV": f"AWS_Lambda_python{minor}",
    }
    assert not [key for key in env if key.startswith(("VIRTUAL_ENV", "PYENV", "PYTEST"))]


@pytest.mark.parametrize("isolation", [Isolation.NONE, Isolation.STANDARD, Isolation.STRICT])
async def test_a_package_only_lambdalet_has_is_an_import_module_error(tmp_path, isolation):
    if isolation is not Isolation.NONE and PROBLEM is not None:
        pytest.skip(f"isolation {isolation} needs root and mount namespaces: {PROBLEM}")
    code = write_function(tmp_path / "code", "import trio\n\ndef handler(event, context):\n    return 'imported'\n")
    async with running_server(FunctionConfig(name="f", code=str(code), isolation=isolation)) as server:
        error, answer = await invoke(server, "f")

    assert error == "Unhandled"
    assert answer["errorType"] == "Runtime.ImportModuleError"
    assert answer["errorMessage"] == "Unable to import module 'app': No module named 'trio'"


def sniffio_package() -> Path:
    """A small pure-Python package lambdalet's environment has (trio's dependency)."""
    spec = importlib.util.find_spec("sniffio")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("sniffio (a dependency of trio) is not a package here")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.mark.parametrize("where", ["code", "layer"])
async def test_the_same_package_in_the_code_or_a_layer_imports(tmp_path, where):
    code = write_function(tmp_path / "code", HANDLER)
    layer = tmp_path / "layer"
    target = code if where == "code" else layer / "python"
    shutil.copytree(sniffio_package(), target / "sniffio", ignore=shutil.ignore_patterns("__pycache__"))
    isolation = Isolation.STANDARD if PROBLEM is None else Isolation.NONE
    config = FunctionConfig(name="f", code=str(code), handler="app.use", isolation=isolation,
                            layers=[str(layer)] if where == "layer" else [])
    async with running_server(config) as server:
        error, seen = await invoke(server, "f", {"module": "sniffio"})
        missing, answer = await invoke(server, "f", {"module": "trio"})

    assert error is None, seen
    expected = {"code": "/var/task/sniffio/__init__.py", "layer": "/opt/python/sniffio/__init__.py"}[where]
    assert seen["file"] == expected if isolation is Isolation.STANDARD else seen["file"].endswith("sniffio/__init__.py")
    assert missing == "Unhandled" and answer["errorType"] == "ModuleNotFoundError"


@needs_mounts
async def test_a_snapstart_copy_has_the_clean_import_path_too(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    minor = "{}.{}".format(*sys.version_info[:2])
    config = FunctionConfig(name="f", code=str(code), handler="app.look", snapstart=True)
    async with running_server(config) as server:
        assert server.functions["f"].template is not None  # lambdalet's runtime: a fork template
        error, seen = await invoke(server, "f")
        missing, answer = await invoke(server, "f", {"module": "trio"})

    assert error is None, seen
    assert seen["path"] == lambda_sys_path(minor)
    assert seen["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start"
    assert missing == "Unhandled" and answer["errorType"] == "ModuleNotFoundError"


# -- the bundled SDK --------------------------------------------------------------------------------

async def test_boto3_is_the_runtimes_pinned_version_and_absent_with_sdk_none(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    bundled = FunctionConfig(name="bundled", code=str(code), handler="app.use")
    none = FunctionConfig(name="none", code=str(code), handler="app.use", sdk="none")
    sink = CapturedLog()
    async with running_server(bundled, none, sink=sink) as server:
        error, seen = await invoke(server, "bundled", {"module": "boto3"})
        missing, answer = await invoke(server, "none", {"module": "boto3"})
        hooks, library = await invoke(server, "none", {"module": "snapshot_restore_py"})

    if error is not None and "No module named 'boto3'" in answer.get("errorMessage", ""):
        pytest.skip("the bundled SDK could not be installed here (offline, no cache)")
    assert error is None, seen
    assert seen["version"] == dict(PYTHON_SDK)["boto3"]
    assert (missing, answer["errorType"], answer["errorMessage"]) == (
        "Unhandled", "ModuleNotFoundError", "No module named 'boto3'")
    assert hooks is None, library  # what the runtime includes besides the SDK stays


def test_offline_without_a_cache_it_says_so_and_runs_without_the_sdk(tmp_path):
    """A real `lambdalet serve`, its cache empty and pip's index out of reach: one warning, and the
    function runs as one that bundles nothing."""
    code = write_function(tmp_path / "code", "import boto3\n\ndef handler(event, context):\n    return 1\n")
    env = {**os.environ, "LAMBDALET_CACHE": str(tmp_path / "cache"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_NO_INDEX": "", "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-c", _SERVE_ONCE, str(code)], env=env, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if "runs without what python" in line]
    assert len(said) == 1 and "`import boto3` fails" in said[0] and "it is not cached" in said[0]
    assert json.loads(run.stdout.splitlines()[-1])["errorType"] == "Runtime.ImportModuleError"  # after the log


_SERVE_ONCE = """
import json, logging, sys, trio
from runtime_api import FunctionConfig, Server, ServerConfig
logging.basicConfig(level=logging.WARNING, format="%(message)s")
async def main():
    config = ServerConfig(port=0, function=[FunctionConfig(name="f", code=sys.argv[1])])
    async with Server(config) as server:
        print((await server.invoke("f", b"{}")).payload.decode())
trio.run(main)
"""


# -- finding the interpreter --------------------------------------------------------------------------

def missing_python() -> str:
    for runtime in RUNTIMES.values():
        if runtime.id.startswith("python"):
            try:
                find_python(runtime.python)
            except InterpreterMissing:
                return runtime.id
    pytest.skip("every Python runtime's version is on this machine: none to miss")


def test_a_missing_python_version_is_a_start_up_error_saying_how_to_get_it(tmp_path):
    runtime = missing_python()
    minor = runtime.removeprefix("python")
    config = FunctionConfig(name="f", code=str(write_function(tmp_path / "code", HANDLER)), runtime_id=runtime)

    with pytest.raises(ConfigError) as raised:
        config.managed_runtime()
    message = str(raised.value)
    assert message.startswith(f"function f: runtime {runtime}: Python {minor} is not on this machine")
    assert f"--python-path {minor}=" in message and f"pyenv install {minor}" in message
    assert "--allow-other-python" in message


async def test_allow_other_python_runs_on_lambdalets_own_saying_both(tmp_path, caplog):
    runtime = missing_python()
    code = write_function(tmp_path / "code", HANDLER)
    config = FunctionConfig(name="f", code=str(code), handler="app.look", runtime_id=runtime, allow_other_python=True)
    async with running_server(config) as server:
        error, seen = await invoke(server, "f")

    own = "{}.{}".format(*sys.version_info[:2])
    assert error is None, seen
    assert seen["version"] == list(sys.version_info[:2]) and seen["env"]["AWS_EXECUTION_ENV"] == f"AWS_Lambda_{runtime}"
    said = [r.getMessage() for r in caplog.records if "--allow-other-python" in r.getMessage()]
    assert len(said) == 1 and f"runtime {runtime} runs on Python {own}" in said[0]
    assert f"not Python {runtime.removeprefix('python')}" in said[0]


def test_python_path_must_be_the_version_it_is_given_for(tmp_path):
    own = "{}.{}".format(*sys.version_info[:2])
    other = "3.12" if own != "3.12" else "3.13"
    config = FunctionConfig(name="f", runtime_id=f"python{other}", interpreters={other: BASE_PYTHON})

    with pytest.raises(ConfigError, match=rf"--python-path {other}=.*: that is Python {own}\.\d+, not {other}"):
        config.managed_runtime()


def test_a_runtime_nothing_here_can_run_is_refused_naming_the_function(capsys):
    with pytest.raises(ConfigError, match="function billing: runtime java21 \\(Java\\) cannot run here"):
        FunctionConfig(name="billing", runtime_id="java21")
    with pytest.raises(ConfigError, match="function f: 'python2.7' is not a runtime lambdalet knows"):
        FunctionConfig(name="f", runtime_id="python2.7")

    assert cli_main(["serve", "--runtime", "dotnet8", "--function-name", "api"]) == 2
    assert "function api: runtime dotnet8 (.NET) cannot run here" in capsys.readouterr().err


# -- Node.js and the OS-only runtimes ----------------------------------------------------------------

NODE_HANDLER = """
export const handler = async (event) => ({
  node: process.version, env: process.env.AWS_EXECUTION_ENV, nodePath: process.env.NODE_PATH, path: process.env.PATH,
  runtimeDir: process.env.LAMBDA_RUNTIME_DIR, echo: event,
});
"""


async def test_a_nodejs_function_runs_on_the_node_of_its_major(tmp_path):
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Node.js runtime interface client")
    major = find_node(int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout[1:].split(".")[0]))
    runtime = f"nodejs{major.version[0]}.x"
    if runtime not in RUNTIMES:
        pytest.skip(f"this machine's node {major.label} is no Lambda runtime's")
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.mjs").write_text(NODE_HANDLER)
    async with running_server(FunctionConfig(name="n", code=str(code), handler="index.handler",
                                             runtime_id=runtime)) as server:
        error, seen = await invoke(server, "n", {"from": "a test"})

    assert error is None, seen
    assert seen["node"].startswith(f"v{major.version[0]}.") and seen["env"] == f"AWS_Lambda_{runtime}"
    assert seen["echo"] == {"from": "a test"}
    runtime_dir = "/var/runtime" if PROBLEM is None else seen["runtimeDir"]
    assert seen["nodePath"] == (f"/opt/nodejs/node{major.version[0]}/node_modules:/opt/nodejs/node_modules:"
                                f"{runtime_dir}/node_modules")
    # Lambda's PATH, its /var/lang/bin only for a node installation of its own (not the system's /usr)
    assert seen["path"].endswith("/usr/local/bin:/usr/bin/:/bin:/opt/bin")


async def test_a_nodejs_function_from_a_sam_template(tmp_path):
    """Runtime: nodejs<major>.x in a template (SAM's transform), served and invoked by boto3's name."""
    pytest.importorskip("samtranslator", reason="the SAM transform (aws-sam-translator) is not installed")
    node = shutil.which("node")
    if node is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the Node.js runtime interface client")
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout[1:].split(".")[0])
    runtime = f"nodejs{major}.x"
    if runtime not in RUNTIMES:
        pytest.skip(f"this machine's node v{major} is no Lambda runtime's")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.mjs").write_text(NODE_HANDLER)
    (tmp_path / "template.yaml").write_text(f"""\
Transform: AWS::Serverless-2016-10-31
Resources:
  NodeFunction:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: node-fn
      Runtime: {runtime}
      Handler: index.handler
      CodeUri: src
""")
    from runtime_api.template import load_template

    stack = load_template(tmp_path / "template.yaml")
    assert [str(problem) for problem in stack.problems] == []
    async with running_server(*stack.functions) as server:
        error, seen = await invoke(server, "node-fn", {"from": "a template"})

    assert error is None, seen
    assert seen["node"].startswith(f"v{major}.") and seen["env"] == f"AWS_Lambda_{runtime}"
    assert seen["echo"] == {"from": "a template"}


def test_a_nodejs_runtime_of_another_major_says_which_node_it_found(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on this machine")
    mine = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout[1:].split(".")[0])
    other = next(major for major in (18, 20, 22, 24) if major != mine)
    config = FunctionConfig(name="n", runtime_id=f"nodejs{other}.x")
    try:
        find_node(other)
        pytest.skip(f"Node.js {other} is on this machine too")
    except InterpreterMissing:
        pass

    with pytest.raises(ConfigError, match=rf"function n: runtime nodejs{other}.x: Node.js {other} is not on this "
                                          rf"machine \(.*node is v{mine}\."):
        config.managed_runtime()


async def test_provided_runs_the_codes_bootstrap_without_an_execution_env(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    lambdalet_runtime(code)  # code/bootstrap, code/lambdalet/bootstrap/...
    config = FunctionConfig(name="p", code=str(code), handler="app.look", runtime_id="provided.al2023",
                            env={"LAMBDALET_PYTHON": BASE_PYTHON,
                                 "LAMBDALET_HOME": "/var/task/lambdalet" if PROBLEM is None else str(code / "lambdalet")})
    async with running_server(config) as server:
        error, seen = await invoke(server, "p")

    assert error is None, seen
    assert "AWS_EXECUTION_ENV" not in seen["env"]  # not defined for the OS-only runtimes
    assert seen["env"]["PATH"] == "/usr/local/bin:/usr/bin/:/bin:/opt/bin"


async def test_provided_without_a_bootstrap_is_an_invalid_entrypoint(tmp_path):
    code = write_function(tmp_path / "code", HANDLER)
    async with running_server(FunctionConfig(name="p", code=str(code), runtime_id="provided.al2")) as server:
        error, answer = await invoke(server, "p")

    assert error == "Unhandled" and answer["errorType"] == "Runtime.InvalidEntrypoint"
    assert "bootstrap" in answer["errorMessage"]


# -- configuration ---------------------------------------------------------------------------------

def test_runtime_settings_from_the_config_file_and_the_command_line(tmp_path):
    (tmp_path / "sdk").mkdir()
    config = tmp_path / "lambdalet.toml"
    config.write_text('[[function]]\nname = "f"\nruntime_id = "python3.12"\nsdk = "./sdk"\n'
                      'interpreters = { "3.12" = "./py/bin/python3.12" }\nallow_other_python = true\n')
    loaded = load_config(config).function[0]
    assert (loaded.runtime_id, loaded.sdk, loaded.interpreters, loaded.allow_other_python) == (
        "python3.12", str(tmp_path / "sdk"), {"3.12": str(tmp_path / "py/bin/python3.12")}, True)

    args = build_parser().parse_args(["serve", "--runtime", "python3.13", "--python-path", "3.13=/opt/py/bin/python3",
                                      "--allow-other-python", "--sdk", "none"])
    flagged = serve_config(args).function[0]
    assert (flagged.runtime_id, flagged.interpreters, flagged.allow_other_python, flagged.sdk) == (
        "python3.13", {"3.13": "/opt/py/bin/python3"}, True, "none")
    with pytest.raises(ConfigError, match="--python-path '3.13': expected VERSION=PATH"):
        serve_config(build_parser().parse_args(["serve", "--python-path", "3.13"]))
    with pytest.raises(ConfigError, match="function f: --sdk /nowhere: not `bundled`, `none`, nor a directory"):
        FunctionConfig(name="f", sdk="/nowhere").managed_runtime()

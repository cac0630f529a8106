"""lambdalet's pytest plugin (runtime_api/pytest_plugin.py), as a project uses it: a test project in
a temporary directory (a SAM template, its function, tests using the `lambdalet` fixture) run by
pytest as a process of its own, loaded with `-p`. What is left running afterwards is checked by
the process ids the functions report."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from client_functions import process_alive
from helpers import REPO
from template_projects import project

pytest.importorskip("samtranslator", reason="the SAM transform (the test extra) reads the project's template")

TEMPLATE = """
    AWSTemplateFormatVersion: "2010-09-09"
    Transform: AWS::Serverless-2016-10-31
    Resources:
      HelloFunction:
        Type: AWS::Serverless::Function
        Properties:
          CodeUri: hello/
          Handler: app.handler
          Runtime: python{minor}
          Environment:
            Variables:
              GREETING: hello
"""

FUNCTION = """
import os

def handler(event, context):
    return {"greeting": f"{os.environ['GREETING']} {event['name']}", "pid": os.getpid()}
"""

# The project's tests. Each writes the pid of the function's runtime where PIDS_FILE says, so the
# outer test can see that process gone once pytest is.
TESTS = """
import json, os
import boto3
import pytest


def record(pid):
    with open(os.environ["PIDS_FILE"], "a") as pids:
        pids.write(f"{pid}\\n")


def test_invoke_through_the_fixture(lambdalet):
    result = lambdalet.invoke("HelloFunction", json.dumps({"name": "fixture"}).encode())
    body = json.loads(result.payload)
    record(body["pid"])
    assert body["greeting"] == "hello fixture"


def test_boto3_at_the_fixtures_endpoint(lambdalet):
    client = boto3.client("lambda", endpoint_url=lambdalet.endpoint, region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    body = json.loads(client.invoke(FunctionName="HelloFunction", Payload=b'{"name": "boto3"}')["Payload"].read())
    record(body["pid"])
    assert body["greeting"] == "hello boto3"


@pytest.mark.lambdalet(functions=[{"name": "own", "code": "hello", "handler": "app.handler",
                                   "env": {"GREETING": "own"}}])
def test_a_server_of_the_tests_own(lambdalet):
    body = json.loads(lambdalet.invoke("own", b'{"name": "marker"}').payload)
    record(body["pid"])
    assert body["greeting"] == "own marker"


@pytest.mark.lambdalet(config="lambdalet.toml")
def test_a_toml_config_file(lambdalet):
    body = json.loads(lambdalet.invoke("configured", b'{"name": "toml"}').payload)
    record(body["pid"])
    assert body["greeting"] == "configured toml"
"""

CONFIG = """
[[function]]
name = "configured"
code = "hello"
handler = "app.handler"
env = { GREETING = "configured" }
"""

FAILING = """
import json, os
import pytest


def record(pid):
    with open(os.environ["PIDS_FILE"], "a") as pids:
        pids.write(f"{pid}\\n")


def test_session_server_then_failure(lambdalet):
    record(json.loads(lambdalet.invoke("HelloFunction", b'{"name": "x"}').payload)["pid"])
    assert False, "this test fails on purpose"


@pytest.mark.parametrize("lambdalet", [{"template": "template.yaml"}], indirect=True)
def test_own_server_then_failure(lambdalet):
    record(json.loads(lambdalet.invoke("HelloFunction", b'{"name": "x"}').payload)["pid"])
    raise RuntimeError("this test fails on purpose too")
"""

MOTO = """
import io, json, os, zipfile
import boto3
from moto import mock_aws


def test_moto_runs_the_real_code():
    package = io.BytesIO()
    with zipfile.ZipFile(package, "w") as bundle:
        bundle.writestr("app.py", "import os\\ndef handler(event, context):\\n"
                                  "    return {'doubled': event['n'] * 2, 'pid': os.getpid()}\\n")
    with mock_aws():
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("lambda")
        client.create_function(FunctionName="double", Runtime="python3.12", Role=role, Handler="app.handler",
                               Code={"ZipFile": package.getvalue()})
        result = json.loads(client.invoke(FunctionName="double", Payload=b'{"n": 21}')["Payload"].read())
        with open(os.environ["PIDS_FILE"], "a") as pids:
            pids.write(f"{result['pid']}\\n")
        assert result["doubled"] == 42
"""

# The README's conftest.py: the integration installed for the whole run, stopped as the process ends.
CONFTEST = """
import runtime_api.moto
runtime_api.moto.install()
"""


def write_project(root: Path, tests: dict[str, str]) -> Path:
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    return project(root, TEMPLATE.format(minor=minor), {"hello/app.py": FUNCTION, **tests}).parent


def plugin_name() -> str:
    """`-p lambdalet` where this checkout is what is installed (the pytest11 entry point); its module
    otherwise. Other plugins are not loaded, so the plugin is loaded once, by this name."""
    for entry in entry_points(group="pytest11"):
        if entry.name == "lambdalet" and entry.value == "runtime_api.pytest_plugin":
            return "lambdalet"
    return "runtime_api.pytest_plugin"


def run_pytest(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[int]]:
    pids = root / "pids.txt"
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO), "PIDS_FILE": str(pids), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", plugin_name(), "-p", "no:cacheprovider",
                           "-q", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    recorded = [int(line) for line in pids.read_text().split()] if pids.exists() else []
    return done, recorded


def test_a_project_with_a_template_passes_through_the_fixture(tmp_path):
    root = write_project(tmp_path, {"test_app.py": TESTS, "lambdalet.toml": CONFIG})

    done, pids = run_pytest(root, "--lambdalet-template", "template.yaml")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    assert len(pids) == 4 and not [pid for pid in pids if process_alive(pid)]


def test_a_failing_test_leaves_no_process_behind(tmp_path):
    root = write_project(tmp_path, {"test_failing.py": FAILING})

    done, pids = run_pytest(root, "--lambdalet-template", "template.yaml")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 failed" in done.stdout and "this test fails on purpose" in done.stdout
    assert len(pids) == 2
    assert not [pid for pid in pids if process_alive(pid)]


def test_the_fixture_without_anything_to_serve_says_what_it_needs(tmp_path):
    root = write_project(tmp_path, {"test_app.py": TESTS})

    done, _ = run_pytest(root, "-k", "through_the_fixture")

    assert done.returncode != 0
    assert "--lambdalet-template PATH" in done.stdout + done.stderr


def test_a_template_that_does_not_exist_is_a_usage_error(tmp_path):
    root = write_project(tmp_path, {"test_app.py": TESTS})

    done, _ = run_pytest(root, "--lambdalet-template", "missing.yaml", "-k", "through_the_fixture")

    assert done.returncode != 0
    assert "missing.yaml" in done.stdout + done.stderr


@pytest.mark.parametrize("enabled", [{"args": ["--lambdalet-moto"]}, {"env": {"LAMBDALET_MOTO": "1"}}],
                         ids=["option", "environment"])
def test_one_option_runs_a_moto_suites_lambda_code(tmp_path, enabled):
    pytest.importorskip("moto.server", reason="moto[server] (the test extra) is needed")
    root = write_project(tmp_path, {"test_moto_suite.py": MOTO})

    done, _ = run_pytest(root, *enabled.get("args", []), env=enabled.get("env"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_readmes_conftest_runs_a_moto_suite_and_leaves_nothing_running(tmp_path):
    pytest.importorskip("moto.server", reason="moto[server] (the test extra) is needed")
    root = write_project(tmp_path, {"test_moto_suite.py": MOTO, "conftest.py": CONFTEST})

    done, pids = run_pytest(root)

    assert done.returncode == 0, done.stdout + done.stderr
    assert len(pids) == 1 and not process_alive(pids[0])


def test_without_it_moto_cannot_run_the_code_here(tmp_path):
    """The same suite on moto's own path: no Docker engine here, so moto answers its Docker error."""
    pytest.importorskip("moto.server", reason="moto[server] (the test extra) is needed")
    root = write_project(tmp_path, {"test_moto_suite.py": MOTO})

    done, _ = run_pytest(root)

    assert done.returncode == 1 and "1 failed" in done.stdout

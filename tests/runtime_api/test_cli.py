"""The command line as a user types it: the README's quick start, the config file, `invoke`,
`bench`, and the embedding examples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import stop_process
from helpers import REPO, free_port
from runtime_api.config import ConfigError, load_config



def wait_for_line(process: subprocess.Popen, text: str) -> str:
    """Read the process's stderr until a line contains `text` (the server says when it listens)."""
    seen = []
    for line in process.stderr:
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError(f"{text!r} never printed; got:\n{''.join(seen)}")


@pytest.fixture
def serve():
    started = []

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime_api.cli", "serve", "--port", str(port), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        started.append(process)
        banner = wait_for_line(process, "Ctrl-C stops the server")
        return process, f"http://127.0.0.1:{port}", banner

    yield start
    for process in started:
        stop_process(process, 10)


def lambdalet_invoke(endpoint: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime_api.cli", "invoke", *args, "--endpoint", endpoint],
                          capture_output=True, text=True, timeout=60)


def test_serve_with_no_arguments_serves_the_example_and_says_how_to_invoke_it(serve):
    process, endpoint, banner = serve()
    assert f"curl -s {endpoint}/2015-03-31/functions/hello/invocations" in banner
    assert "boto3.client('lambda'" in banner
    done = lambdalet_invoke(endpoint, "hello", "--payload", '{"name": "cli"}', "--log-type", "Tail")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert json.loads(answer["body"])["message"] == "Hello, cli!"
    assert "greeting cli from hello" in done.stderr  # the log tail
    assert '"StatusCode": 200' in done.stderr


def test_sigterm_stops_the_server_and_its_runtimes(serve):
    process, endpoint, _ = serve()
    assert lambdalet_invoke(endpoint, "hello").returncode == 0
    # trio starts processes from worker threads: gather the children of every thread.
    runtimes = [pid for task in Path(f"/proc/{process.pid}/task").iterdir() for pid in (task / "children").read_text().split()]
    assert runtimes, "the invocation ran in a runtime process of the server's"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    for pid in runtimes:
        assert not Path(f"/proc/{pid}").exists(), f"runtime {pid} outlived the server"


def test_a_config_file_serves_several_functions(serve, tmp_path):
    for name, word in (("one", "first"), ("two", "second")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "app.py").write_text(f"import os\ndef handler(e, c):\n    return ['{word}', os.environ['WORD']]\n")
    config = tmp_path / "functions.toml"
    config.write_text(
        '[[function]]\nname = "one"\ncode = "one"\nenv = { WORD = "a" }\n\n'
        '[[function]]\nname = "two"\ncode = "two"\nconcurrency = 2\nenv = { WORD = "b" }\n'
    )
    _, endpoint, banner = serve("--config", str(config))
    assert "function one: " in banner and "function two: " in banner and "concurrency 2" in banner
    assert json.loads(lambdalet_invoke(endpoint, "one").stdout) == ["first", "a"]
    assert json.loads(lambdalet_invoke(endpoint, "two").stdout) == ["second", "b"]
    missing = lambdalet_invoke(endpoint, "three")
    assert missing.returncode == 2 and "ResourceNotFoundException" in missing.stderr


@pytest.mark.parametrize("text, complaint", [
    ('[[function]]\nname = "x"\nmemory = 64\n', "memory 64 MB is outside Lambda's 128-10240 MB"),
    ('[[function]]\nname = "x"\ntimeout = 901\n', "outside Lambda's 1-900 s"),
    ('[[function]]\nname = "x"\nenv = { AWS_REGION = "eu-west-1" }\n', "AWS_REGION is a reserved environment variable"),
    ('[[function]]\nname = "x"\nbogus = 1\n', "unknown field `bogus`"),
    ('[[function]]\nname = "x"\n[[function]]\nname = "x"\n', "function names must be unique"),
    ("not toml [", "Expected"),
])
def test_a_bad_config_file_says_what_is_wrong(tmp_path, text, complaint):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=None) as error:
        load_config(path)
    assert complaint in str(error.value) and str(path) in str(error.value)


def test_serve_refuses_a_bad_env_flag():
    done = subprocess.run([sys.executable, "-m", "runtime_api.cli", "serve", "--env", "NOEQUALS", "--port", "0"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "expected KEY=VALUE" in done.stderr


@pytest.mark.parametrize("example", ["embed_trio.py", "embed_thread.py"])
def test_the_embedding_examples_run(example):
    done = subprocess.run([sys.executable, str(REPO / "examples" / example)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "payload:" in done.stdout
    if example == "embed_trio.py":
        assert 'payload: {"sum": 5}' in done.stdout
    else:
        assert "function error: Unhandled ValueError" in done.stdout


def test_the_command_line_loads_no_benchmark():
    """The product never imports its measurements: `lambdalet bench` is found when it is asked for."""
    code = "import sys, runtime_api.cli; print(sorted(m for m in sys.modules if 'benchmarks' in m))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


@pytest.mark.parametrize("installed", [True, False])
def test_bench_runs_the_command_installed_for_it(tmp_path, installed):
    """`lambdalet bench ARGS` runs what lambdalet's `lambdalet.commands` entry point `bench` names, with
    ARGS as they are (`--help` included); without it, says how to install it."""
    metadata = tmp_path / "lambdalet-0.dist-info"  # first on the path, so it stands for lambdalet's own
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: lambdalet\nVersion: 0\n")
    (metadata / "entry_points.txt").write_text("[lambdalet.commands]\nbench = stand_in:main\n" if installed else "")
    (tmp_path / "stand_in.py").write_text("def main(argv):\n    print(argv)\n    return 7\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "runtime_api.cli", "bench", "--help", "--samples", "1"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    if installed:
        assert (done.returncode, done.stdout) == (7, "['--help', '--samples', '1']\n"), done.stderr
    else:
        assert done.returncode == 2 and "lambdalet bench: not installed" in done.stderr

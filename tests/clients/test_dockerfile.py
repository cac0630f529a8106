"""The Dockerfile's image, reproduced without Docker: the layout is read from the Dockerfile itself
(its install commands, COPY destinations, ENV and CMD), laid out under a temporary root with the
same commands, and its `bootstrap` run under the real RIE and under the image's lambdalet-rie,
invoked through the invoke endpoint as `docker run -p 9000:8080` would be.

What differs from the image, by necessity: paths live under the temporary root, and the
interpreter is this machine's Python in a bare virtualenv (no site-packages, like the image's
python3.12 with nothing installed) instead of AL2023's /usr/bin/python3.12.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.common import stop_process
from benchmarks.realparts import rie_binary
from helpers import REPO, free_port

INVOKE = "/2015-03-31/functions/function/invocations"


@dataclass
class Stage:
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, each a list of (INSTRUCTION, arguments)."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            stages.append(Stage(parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args, stages


@dataclass
class Image:
    """The image's files under `root`, and what it sets for its runtime."""

    root: Path
    env: dict[str, str]
    handler: str

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")


def _substitute(text: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Image:
    args, stages = parse_dockerfile(REPO / "Dockerfile")
    build = next(s for s in stages if s.name == "build")
    final = stages[-1]
    root = tmp_path_factory.mktemp("image")
    python = root / "python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(python)], check=True)
    values = {"PYTHON": args["PYTHON"]}

    def on_host(command: str) -> list[str]:
        """A RUN command of the build stage, with the image's paths moved under the root and the
        image's Python replaced by this one (it has pip; the image's build stage has it too)."""
        words = shlex.split(_substitute(command, values))
        assert words[0] == args["PYTHON"], f"expected a {args['PYTHON']} command, got {command!r}"
        mapped = [sys.executable]
        for word in words[1:]:
            if word == "/src":
                mapped.append(str(REPO))
            elif word.startswith("/"):
                matches = glob.glob(str(root / word.lstrip("/")))
                mapped.extend(matches or [str(root / word.lstrip("/"))])
            else:
                mapped.append(word)
        return mapped

    pip_runs = [run for run in build.all("RUN") if " -m pip " in run]
    assert [" wheel " in pip_runs[0], " install " in pip_runs[1]] == [True, True], pip_runs
    for run in pip_runs:  # the wheel, then its installation into the runtime directory
        subprocess.run(on_host(run), check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    for copy in final.all("COPY"):
        words = copy.split()
        options = [w for w in words if w.startswith("--")]
        source, destination = [w for w in words if not w.startswith("--")]
        if "--from=build" in options:
            assert (root / destination.lstrip("/")).is_dir(), f"{destination} was not built"
            continue
        target = root / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / source, target)
        if "--chmod=755" in options:
            target.chmod(0o755)
    env = {}
    for line in final.all("ENV"):
        name, _, value = line.partition("=")
        env[name] = _substitute(value, values)
    # The image's interpreter and directories, as they are under the root.
    env["LAMBDALET_PYTHON"] = str(python / "bin" / "python")
    env["LAMBDALET_HOME"] = str(root / env["LAMBDALET_HOME"].lstrip("/"))
    (handler,) = json.loads(final.all("CMD")[0])
    return Image(root, env, handler)


def test_the_image_has_what_the_runtime_needs_and_nothing_for_building(image):
    home = Path(image.env["LAMBDALET_HOME"])
    assert (home / "bootstrap" / "__main__.py").is_file()
    assert (home / "trio").is_dir() and (home / "h11").is_dir()  # lambdalet-rie's dependencies
    assert list((home / "bootstrap" / "__pycache__").glob("*.pyc")), "compiled at build time"
    assert os.access(image.path("/var/runtime/bootstrap"), os.X_OK)
    assert image.path("/var/task/app.py").is_file() and image.handler == "app.handler"
    assert not (home / "pytest").exists() and not (home / "boto3").exists()


@pytest.fixture(params=["aws RIE", "lambdalet-rie"])
def emulator(request, image):
    """The image started as /lambda-entrypoint.sh starts it outside Lambda: `aws-lambda-rie
    /var/runtime/bootstrap`, _HANDLER from CMD, working directory /var/task."""
    command = [str(rie_binary())] if request.param == "aws RIE" else [str(image.path("/usr/local/bin/lambdalet-rie"))]
    port, api = free_port(), free_port()
    env = {"PATH": os.environ["PATH"], "LAMBDA_TASK_ROOT": str(image.path("/var/task")),
           "LAMBDA_RUNTIME_DIR": str(image.path("/var/runtime")), "_HANDLER": image.handler, **image.env}
    process = subprocess.Popen(
        [*command, "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
         "--runtime-api-address", f"127.0.0.1:{api}", str(image.path("/var/runtime/bootstrap"))],
        cwd=image.path("/var/task"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the port accepting is the event waited for
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "the emulator never listened"
                time.sleep(0.01)
        yield f"http://127.0.0.1:{port}{INVOKE}"
    finally:
        stop_process(process, 10, group=True)
        process.stdout.close()
        process.stderr.close()


def test_the_example_handler_answers_through_the_images_bootstrap(emulator):
    request = urllib.request.Request(emulator, data=b'{"name": "docker"}', method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"])["message"] == "Hello, docker!"


def test_the_ci_builds_the_image_where_docker_can(tmp_path):
    """.ci/run builds both variants when a Docker engine answers, and says it skipped otherwise."""
    script = (REPO / ".ci" / "run").read_text()
    assert "docker build" in script and "--build-arg LOCAL_EMULATOR=lambdalet" in script
    assert "skipped" in script


def test_doctor_says_the_installed_bootstrap_will_run_on_provided_al2023(image):
    from sandbox.doctor import diagnose

    diagnosis = diagnose(image.path("/var/runtime/bootstrap"), arch="x86_64")
    assert diagnosis.will_run, diagnosis.render()
    done = subprocess.run([sys.executable, "-m", "runtime_api.cli", "doctor", str(image.path("/var/runtime/bootstrap"))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr

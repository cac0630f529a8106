"""Run a runtime (awslambdaric or ours) as a child process against a Runtime API, collect what it
printed, and normalise what differs only by accident (timestamps, the User-Agent, set order)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASK = HERE / "task"
REPO = HERE.parent.parent
PYTHON = sys.executable

RUNTIMES = {
    "awslambdaric": [PYTHON, "-m", "awslambdaric"],
    "bootstrap": [PYTHON, "-m", "bootstrap"],
}


def task_dir(tmp_path):
    """A fresh copy of the handler directory (the function's task root)."""
    target = tmp_path / "task"
    shutil.copytree(TASK, target)
    return target


def base_env(**extra):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_LAMBDA_FUNCTION_NAME": "test_function",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "3008",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/Functions",
        "AWS_LAMBDA_LOG_STREAM_NAME": "$LATEST",
    }
    env.update(extra)
    return env


def kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Finished:
    def __init__(self, returncode, stdout, stderr, requests):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.requests = requests


def run_against(api, kind, handler, cwd, env, until):
    """Start runtime `kind` for `handler` against `api` (a FakeRuntimeAPI); return once
    `until(requests)` holds or the runtime exits. The runtime is killed (whole process group)
    either way. returncode is None when we killed it."""
    argv = RUNTIMES[kind] + ([handler] if handler is not None else [])
    env = dict(env, AWS_LAMBDA_RUNTIME_API=api.address)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    exited = []
    out = {}

    def reader(name, stream):
        out[name] = stream.read()

    readers = [threading.Thread(target=reader, args=("stdout", proc.stdout)),
               threading.Thread(target=reader, args=("stderr", proc.stderr))]
    for t in readers:
        t.start()

    def watch():
        proc.wait()
        exited.append(proc.returncode)
        with api.arrived:
            api.arrived.notify_all()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        api.wait_for(lambda requests: exited or until(requests), timeout=60)
    finally:
        returncode = exited[0] if exited else None
        kill_group(proc)
        for t in readers:
            t.join(10)
    return Finished(returncode, out.get("stdout", b""), out.get("stderr", b""), list(api.requests))


TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")


def normalise_text(data):
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return TIMESTAMP.sub("<TS>", text)


def normalise_request(request):
    """What a runtime posted, minus the accidents: User-Agent dropped, the X-Ray cause's `paths`
    (a set in awslambdaric) sorted."""
    headers = []
    for name, value in request.headers:
        if name.lower() == "user-agent":
            continue
        if name.lower() == "lambda-runtime-function-xray-error-cause" and value:
            cause = json.loads(value)
            cause["paths"] = sorted(cause["paths"])
            value = cause
        headers.append((name, value))
    return {"method": request.method, "path": request.path, "headers": headers,
            "body": request.body, "trailers": request.trailers}

"""`lambdalet serve` run by an unprivileged user: it says once which protection is missing, one
line each, and serves at the level it can give: invocations work, RLIMIT_DATA is the memory guard
(a memory hog fails with MemoryError instead of taking the machine), a timeout still kills the
environment's whole process tree (its process group), and the server keeps serving afterwards.

The test runs as root (as CI does) and starts the real `lambdalet serve` as `nobody` through
setpriv. Everything that user needs must be reachable: the code (PYTHONPATH), a directory of its
own for the functions, and the interpreter. An interpreter under a directory closed to others
(pyenv in root's 0700 home) is shown to the unprivileged server through a private mount namespace
that root makes around it (a 0755 tmpfs over the closed directory with the interpreter's prefix
bound back): nothing changes on the host, and the server itself holds no privilege."""

from __future__ import annotations

import base64
import concurrent.futures
import http.client
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
DROP = [SETPRIV or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
BOUND = 120.0  # seconds: only so that a broken server fails the test instead of hanging the suite

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to start the server as an unprivileged user"),
    pytest.mark.skipif(SETPRIV is None, reason="needs util-linux's setpriv to drop to an unprivileged user"),
]

HANDLERS = '''
import json, os, resource, socket, subprocess, time

def whoami(event, context):
    return {"uid": os.getuid(), "cwd": os.getcwd(), "rlimit_data": resource.getrlimit(resource.RLIMIT_DATA)[0]}

def hog(event, context):
    chunks = []
    for _ in range(event.get("mb", 1024) // 8):
        chunks.append(b"x" * (8 << 20))
    return {"allocated_mb": 8 * len(chunks)}

def tree_and_hang(event, context):
    """A child and an orphaned grandchild (both in the runtime's process group), then hang."""
    child = subprocess.Popen(["sleep", "1000"])
    read_end, write_end = os.pipe()
    first = os.fork()
    if first == 0:
        second = os.fork()
        if second == 0:
            os.execvp("sleep", ["sleep", "1000"])
        os.write(write_end, str(second).encode())
        os._exit(0)
    os.waitpid(first, 0)
    grandchild = int(os.read(read_end, 32))
    pids = {"runtime": os.getpid(), "child": child.pid, "grandchild": grandchild}
    with socket.create_connection(("127.0.0.1", int(os.environ["REPORT_PORT"]))) as report:
        report.sendall(json.dumps(pids).encode())
    while True:
        time.sleep(1000)
'''


def interpreter_reachable(env: dict[str, str]) -> bool:
    probe = subprocess.run([*DROP, sys.executable, "-c", "import trio, msgspec, h11, runtime_api, bootstrap"],
                           env=env, cwd="/", capture_output=True, timeout=60)
    return probe.returncode == 0


def closed_ancestor(path: str) -> str | None:
    """The outermost directory on `path` that others cannot traverse, or None."""
    current = "/"
    for part in Path(path).parts[1:]:
        current = os.path.join(current, part)
        if os.path.isdir(current) and not os.stat(current).st_mode & 0o001:
            return current
    return None


def as_nobody(argv: list[str], env: dict[str, str], stage: Path) -> list[str]:
    """`argv` run as nobody; with the interpreter (and its virtualenv) and this checkout shown
    through a private mount namespace where the user could not reach them otherwise (pyenv in
    root's home, a checkout in a `mktemp -d` directory)."""
    if interpreter_reachable(env):
        return [*DROP, *argv]
    needed = sorted({os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix), str(REPO.resolve())})
    hidden = [(path, closed_ancestor(path)) for path in needed]
    hidden = [(path, closed) for path, closed in hidden if closed is not None]
    unshare = shutil.which("unshare")
    if not hidden or unshare is None:
        pytest.skip(f"the interpreter {sys.executable} cannot be run by an unprivileged user here")
    closed_dirs = sorted({closed for _, closed in hidden}, key=len)
    outermost = [c for c in closed_dirs if not any(c.startswith(o + "/") for o in closed_dirs if o != c)]
    staged = [(shlex.quote(path), shlex.quote(str(stage / str(n)))) for n, (path, _) in enumerate(hidden)]
    steps = [f"mkdir {at} && mount --bind {path} {at}" for path, at in staged]
    steps += [f"mount -t tmpfs -o mode=755 tmpfs {shlex.quote(c)}" for c in outermost]  # hides the rest
    steps += [f"mkdir -p {path} && mount --move {at} {path}" for path, at in staged]
    script = " && ".join(steps) + ' && exec "$@"'
    return [unshare, "--mount", "--propagation", "private", "/bin/sh", "-c", script, "lambdalet-test", *DROP, *argv]


class UnprivilegedServer:
    """`lambdalet serve --config` run as nobody; its start-up warnings and Invoke API."""

    def __init__(self, root: Path, config: Path) -> None:
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(root), "PYTHONPATH": str(REPO),
               "LANG": "C.UTF-8"}
        stage = root / "stage"
        stage.mkdir()
        argv = as_nobody([sys.executable, "-m", "runtime_api.cli", "serve", "--config", str(config), "--port", "0"],
                         env, stage)
        self.stdout = open(root / "stdout.log", "wb")
        self.proc = subprocess.Popen(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=self.stdout,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.lines: list[str] = []
        try:
            self.port = self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> int:
        """Read the server's stderr until it says where its Invoke API listens."""
        deadline = time.monotonic() + BOUND
        pending = b""
        while True:
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no Invoke API after {BOUND:.0f} s; stderr so far: {self.lines}")
            data = os.read(self.proc.stderr.fileno(), 65536)
            if not data:
                raise RuntimeError(f"the server exited ({self.proc.wait()}) before listening: {self.lines}")
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                self.lines.append(line.decode(errors="replace"))
                found = re.match(r"lambdalet: Invoke API on http://127\.0\.0\.1:(\d+)$", self.lines[-1])
                if found:
                    return int(found[1])

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("lambdalet: WARNING: ")]

    def invoke(self, name: str, payload: dict | None = None) -> tuple[str | None, dict]:
        """(X-Amz-Function-Error, the payload) of a RequestResponse invocation."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=BOUND)
        try:
            conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=json.dumps(payload or {}),
                         headers={"X-Amz-Log-Type": "Tail"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, body
        self.last_log = base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode(errors="replace")
        return response.getheader("X-Amz-Function-Error"), json.loads(body)

    def stop(self) -> int:
        """SIGTERM (the server kills and reaps every environment), then the exit status."""
        if self.stdout.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(BOUND)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        rest = self.proc.stderr.read().decode(errors="replace")
        self.lines += rest.splitlines()
        self.proc.stderr.close()
        self.stdout.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def report_listener():
    """Where the hanging handler reports its process tree (an event, not a sleep)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(BOUND)
        yield listener


@pytest.fixture(scope="module")
def server(report_listener):
    root = Path(tempfile.mkdtemp(prefix="lambdalet-unprivileged-"))
    try:
        code = root / "fn"
        code.mkdir()
        (code / "app.py").write_text(HANDLERS)
        report_port = report_listener.getsockname()[1]
        config = root / "functions.toml"
        config.write_text(f'''
[[function]]
name = "plain"
code = "fn"
handler = "app.whoami"

[[function]]
name = "ok"
code = "fn"
handler = "app.whoami"
isolation = "standard"
cpu_model = "lambda"

[[function]]
name = "hog"
code = "fn"
handler = "app.hog"
isolation = "standard"
timeout = 60.0

[[function]]
name = "hang"
code = "fn"
handler = "app.tree_and_hang"
isolation = "standard"
timeout = 1.0
env = {{ REPORT_PORT = "{report_port}" }}
''')
        for path in (root, code, *root.iterdir(), *code.iterdir()):
            os.chown(path, NOBODY, NOBODY)
        running = UnprivilegedServer(root, config)
        try:
            yield running
        finally:
            running.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_it_says_once_which_protection_is_missing_one_line_each(server):
    assert server.warnings == [
        "lambdalet: WARNING: isolation standard is not permitted here (mount namespaces need root here): "
        "environments run at none, sharing the host's /tmp, without memory or process limits",
        "lambdalet: WARNING: no private /tmp nor read-only /var/task (mount namespaces need root here): "
        "environments share the host's /tmp and see their code at its own path",
        "lambdalet: WARNING: no memory limit through cgroups (cgroup v1 memory controller not writable): "
        "RLIMIT_DATA is the memory guard, an out-of-memory kill is not detected and Max Memory Used is the "
        "runtime's own peak, not its children's",
        "lambdalet: WARNING: no process limit (cgroup v1 pids controller not writable): a fork bomb is not contained",
        "lambdalet: WARNING: no cgroup at all: environments are killed by process group, so a process that "
        "leaves it (setsid) outlives its environment",
        "lambdalet: WARNING: no CPU limit for cpu model lambda (cgroup v1 cpu controller not writable): "
        "environments use the host's CPUs",
    ]


def test_invocations_run_unprivileged_at_the_level_the_host_can_give(server):
    error, answer = server.invoke("ok")

    assert error is None
    assert answer["uid"] == NOBODY
    assert answer["cwd"].endswith("/fn")  # its code at its own path: no /var/task without a mount namespace
    assert answer["rlimit_data"] == 128 << 20  # the memory guard: the function's memory
    assert "Memory Size: 128 MB" in server.last_log
    # The default isolation is none here: a plain process tree, no memory guard of lambdalet's.
    assert server.invoke("plain")[1]["rlimit_data"] != 128 << 20


def test_a_memory_hog_fails_with_memory_error_and_its_environment_carries_on(server):
    error, answer = server.invoke("hog", {"mb": 1024})

    assert error == "Unhandled"
    assert answer["errorType"] == "MemoryError"
    assert server.invoke("hog", {"mb": 16}) == (None, {"allocated_mb": 16})


def test_a_timeout_kills_the_environments_whole_process_tree(server, report_listener):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        call = pool.submit(server.invoke, "hang")
        connection, _ = report_listener.accept()
        with connection:
            pids = json.loads(connection.makefile("rb").read())
        pidfds = {name: os.pidfd_open(pid) for name, pid in pids.items()}
        try:
            error, answer = call.result(BOUND)

            assert error == "Unhandled"
            assert answer["errorType"] == "Sandbox.Timedout"
            poller = select.poll()
            for fd in pidfds.values():
                poller.register(fd, select.POLLIN)  # readable once the process has exited
            exited: set[int] = set()
            deadline = time.monotonic() + BOUND
            while len(exited) < len(pidfds) and time.monotonic() < deadline:
                exited.update(fd for fd, _ in poller.poll(1000))
            assert {name: fd in exited for name, fd in pidfds.items()} == {
                "runtime": True, "child": True, "grandchild": True}
        finally:
            for fd in pidfds.values():
                os.close(fd)


def test_the_server_keeps_serving_and_stops_cleanly(server):
    assert server.invoke("ok")[1]["uid"] == NOBODY
    assert server.invoke("plain")[0] is None

    assert server.stop() == 0
    assert not [line for line in server.lines if "Traceback" in line]

"""Small building blocks for tests: function directories, captured logs, running servers."""

from __future__ import annotations

import io
import os
import shutil
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from benchmarks.common import free_port  # noqa: F401 (tests import it from here; defined once, there)
from runtime_api import FunctionConfig, LambdaletThread, Server, ServerConfig
from runtime_api.logs import LogSink

REPO = Path(__file__).resolve().parent.parent  # the checkout under test
PYTHON = sys.executable
# The interpreter behind PYTHON (a virtualenv's base): a Python a runtime command can name from
# wherever the virtualenv lives (the private /tmp hides one under the host's /tmp).
BASE_PYTHON = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
AWSLAMBDARIC = [PYTHON, "-m", "awslambdaric"]


def wait_until(condition, what: str, limit: float = 120) -> None:
    """Poll `condition()` where lambdalet offers no event to await (another process's state); the
    bound only turns a hang into a failure saying what was awaited."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        time.sleep(0.02)


def write_function(directory: Path, source: str, module: str = "app") -> Path:
    """A function directory holding `module.py` with the given (dedented) source."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(textwrap.dedent(source))
    return directory


EXTENSION_PROGRAMS = Path(__file__).parent / "runtime_api" / "extension_programs"


def extension_layer(root: Path, name: str = "recorder", program: str = "recorder.py") -> Path:
    """A layer whose extensions/ holds one of tests/runtime_api/extension_programs/, as `name`."""
    layer = root / f"layer-{name}"
    target = layer / "extensions" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    source = (EXTENSION_PROGRAMS / program).read_text()
    if program.endswith(".py"):
        source = f"#!{BASE_PYTHON}\n" + source
    target.write_text(source)
    target.chmod(0o755)
    return layer


def lambdalet_runtime(directory: Path) -> Path:
    """A custom runtime made of lambdalet's runtime client as bootstrap/README.md describes it for
    provided.al2023: `directory`/bootstrap (the shell script) and a copy of the package in
    `directory`/lambdalet, needing nothing else of this checkout. Its function gets
    LAMBDALET_PYTHON=BASE_PYTHON and LAMBDALET_HOME naming where `directory`/lambdalet is seen."""
    package = REPO / "bootstrap"
    shutil.copytree(package, directory / "lambdalet" / "bootstrap", ignore=shutil.ignore_patterns("__pycache__"))
    script = directory / "bootstrap"
    shutil.copy2(package / "bootstrap", script)
    return script


class CapturedLog(LogSink):
    """A LogSink that keeps what the server printed, for assertions."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        super().__init__(self.buffer)

    @property
    def text(self) -> str:
        return self.buffer.getvalue().decode(errors="replace")


def awslambdaric_function(name: str, code: Path, handler: str = "app.handler", **settings) -> FunctionConfig:
    return FunctionConfig(name=name, code=str(code), handler=handler, runtime=[*AWSLAMBDARIC, handler], **settings)


@asynccontextmanager
async def running_server(*functions: FunctionConfig, sink: LogSink | None = None):
    async with Server(ServerConfig(port=0, function=list(functions)), sink=sink or CapturedLog()) as server:
        yield server


@contextmanager
def threaded_server(*functions: FunctionConfig, sink: LogSink | None = None):
    with LambdaletThread(ServerConfig(port=0, function=list(functions)), sink=sink or CapturedLog()) as handle:
        yield handle


def mountinfo() -> list[str]:
    """This process's mounts, sorted: equal before and after means nothing was left mounted here."""
    with open("/proc/self/mountinfo") as f:
        return sorted(f.read().splitlines())


def processes_in(namespaces: set[tuple[str, int]]) -> list[int]:
    """The pids of every process in any of `namespaces`, each (kind as in /proc/<pid>/ns, inode)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for kind, inode in namespaces:
            try:
                if os.stat(f"/proc/{pid}/ns/{kind}").st_ino == inode:
                    found.append(int(pid))
                    break
            except OSError:
                continue
    return found


class Gate:
    """Lets a test see invocations arrive in the handler and release them: an event, not a sleep.

    A handler calls `gate.handler_snippet`'s `wait_at_gate(context)`: it connects to the gate (at
    GATE_PORT in its environment), says its request id and blocks until the test releases it. Given
    `path`, the gate listens on that Unix socket instead of a loopback port: an environment with a
    network namespace of its own reaches a socket in its code directory, not the host's loopback.
    """

    handler_snippet = '''
import os as _os, socket as _socket

def wait_at_gate(context, note=""):
    sock = _socket.create_connection(("127.0.0.1", int(_os.environ["GATE_PORT"])))
    sock.sendall(f"{context.aws_request_id} {note}\\n".encode())
    reply = sock.recv(64)
    sock.close()
    return reply.decode()
'''

    def __init__(self, path: Path | None = None) -> None:
        import trio

        self._trio = trio
        self.path = path
        self.arrivals: list[tuple[str, object]] = []  # (first line, stream)
        self._arrived = trio.Condition()
        self.port = 0

    async def start(self, nursery) -> "Gate":
        trio = self._trio
        if self.path is None:
            (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
            self.port = listener.socket.getsockname()[1]
        else:
            sock = trio.socket.socket(socket.AF_UNIX)
            await sock.bind(str(self.path))
            sock.listen(8)
            listener = trio.SocketListener(sock)
        nursery.start_soon(trio.serve_listeners, self._accept, [listener])
        return self

    async def _accept(self, stream) -> None:
        data = b""
        while not data.endswith(b"\n"):
            chunk = await stream.receive_some(256)
            if not chunk:
                return
            data += chunk
        async with self._arrived:
            self.arrivals.append((data.decode().strip(), stream))
            self._arrived.notify_all()
        await self._trio.sleep_forever()  # the stream stays open until released

    async def wait_arrivals(self, count: int) -> list[str]:
        # A bound only so that a broken handler fails the test instead of hanging the suite.
        with self._trio.fail_after(120):
            async with self._arrived:
                while len(self.arrivals) < count:
                    await self._arrived.wait()
        return [line for line, _ in self.arrivals[:count]]

    async def answer(self, line: str, reply: bytes = b"") -> None:
        """Release the one arrival that said `line`, with `reply`."""
        (index,) = [i for i, (said, _) in enumerate(self.arrivals) if said == line]
        _, stream = self.arrivals.pop(index)
        await stream.send_all(reply)
        await stream.aclose()

    async def release_all(self, reply: bytes = b"go") -> None:
        for _, stream in self.arrivals:
            try:
                await stream.send_all(reply)
                await stream.aclose()
            except self._trio.BrokenResourceError:
                pass
        self.arrivals.clear()


class HttpClient:
    """A minimal HTTP/1.1 client over trio and h11 that shows a response as it arrives."""

    def __init__(self, stream) -> None:
        import h11

        self.h11 = h11
        self.stream = stream
        self.conn = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> "HttpClient":
        import trio

        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def send(self, method: str, target: str, body: bytes = b"", headers=()) -> None:
        h11 = self.h11
        head = [("Host", "127.0.0.1"), *headers]
        if not any(name.lower() == "content-length" for name, _ in head):
            head.append(("Content-Length", str(len(body))))
        await self.stream.send_all(self.conn.send(h11.Request(method=method, target=target, headers=head)))
        if body:
            await self.stream.send_all(self.conn.send(h11.Data(data=body)))
        await self.stream.send_all(self.conn.send(h11.EndOfMessage()))

    async def next_event(self):
        h11 = self.h11
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(await self.stream.receive_some(65536))
                continue
            if type(event) is h11.InformationalResponse:
                continue
            return event

    async def response(self):
        """(status, headers as a dict of lower-case names, body, trailers)."""
        h11 = self.h11
        head = await self.next_event()
        body = b""
        while True:
            event = await self.next_event()
            if type(event) is h11.Data:
                body += event.data
            elif type(event) is h11.EndOfMessage:
                trailers = {k.decode(): v.decode() for k, v in event.headers}
                break
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        headers = {k.decode(): v.decode() for k, v in head.headers}
        return head.status_code, headers, body, trailers

    async def aclose(self) -> None:
        await self.stream.aclose()


INVOKE = "/2015-03-31/functions/{name}/invocations"


# Run as root: the rest of the command line in a user namespace of its own (every id mapped to
# itself) whose user.max_user_namespaces is 0, so that nothing in it may make user namespaces (an
# honest "not allowed here" for sandbox/userns.py). The host's sysctls are untouched; the namespace
# ends with its last process.
_WITHOUT_USER_NAMESPACES = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
ready_r, ready_w = os.pipe()
mapper = os.fork()
if mapper == 0:  # a process outside maps it: from inside, a namespace can map only its own user
    os.close(ready_w)
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{os.getppid()}/{name}", "w") as f:
            f.write("0 0 4294967295")
    os._exit(0)
os.close(ready_r)
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    sys.exit(f"unshare(CLONE_NEWUSER): {os.strerror(ctypes.get_errno())}")
os.write(ready_w, b"u")
if os.waitpid(mapper, 0)[1] != 0:
    sys.exit("could not map the user namespace")
with open("/proc/sys/user/max_user_namespaces", "w") as f:
    f.write("0")
os.execvp(sys.argv[1], sys.argv[1:])
"""


def without_user_namespaces(argv: list[str]) -> list[str]:
    """`argv` (run by root) where no user namespace may be made: see _WITHOUT_USER_NAMESPACES."""
    return [sys.executable, "-c", _WITHOUT_USER_NAMESPACES, *argv]

class ServeProcess:
    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.stderr_lines: list[str] = []
        self.endpoint: str | None = None
        self._announced = threading.Event()
        self._line = threading.Condition()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            with self._line:
                self.stderr_lines.append(line)
                self._line.notify_all()
            found = re.match(r"lambdalet: Invoke API on (http://\S+)", line)
            if found:
                self.endpoint = found[1]
                self._announced.set()
        self._announced.set()  # it exited: wake the waiter
        with self._line:
            self._line.notify_all()

    def wait_line(self, pattern: str, limit: float = 30) -> re.Match:
        """The first line of its stderr matching `pattern`, once it has printed it."""
        with self._line:
            found = self._line.wait_for(lambda: next((m for line in self.stderr_lines if (m := re.search(pattern, line))),
                                                     None) or not self._reader.is_alive(), limit)
        assert isinstance(found, re.Match), f"no line matching {pattern!r}:\n{self.stderr}"
        return found

    def wait_announced(self, limit: float = 30) -> str:
        """The endpoint lambdalet prints once it is listening: readiness it reports itself."""
        self._announced.wait(limit)
        assert self.endpoint is not None, f"lambdalet serve did not start:\n{self.stderr}"
        return self.endpoint

    def stop(self, signum: int, limit: float = 15) -> int:
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=limit)
        finally:
            self._reader.join(timeout=limit)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)


@contextmanager
def lambdalet_serve(*args: str, log_dir, cwd=None, env=None):
    """`lambdalet serve --port 0 ARGS...` as a process (the kernel picks the port; lambdalet announces
    it), stopped with SIGTERM afterwards; its stdout in LOG_DIR/lambdalet-serve.stdout."""
    from benchmarks.common import stop_process

    with open(log_dir / "lambdalet-serve.stdout", "wb") as stdout:
        process = subprocess.Popen([PYTHON, "-m", "runtime_api.cli", "serve", "--port", "0", *args], stdout=stdout,
                                   stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=cwd, env=env)
    serve = ServeProcess(process)
    try:
        yield serve
    finally:
        stop_process(process, 10)  # lambdalet stops its environments on SIGTERM
        print(f"--- lambdalet serve stderr ---\n{serve.stderr[-20000:]}")

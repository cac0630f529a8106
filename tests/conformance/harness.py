"""Run one RIE-compatible server (the real RIE or lambdalet-rie) and talk to both of its sides.

A `Target` is a command line that behaves like `aws-lambda-rie`. `launch()` starts it in a fresh
function directory on free 127.0.0.1 ports and always stops it again: SIGTERM, then SIGKILL, then
reap, and then kill the process group of every runtime it started (found by a marker variable in
their environment: RIE starts the runtime in its own process group and orphans it when it crashes).

A `Session` is what a scenario's steps use: it sends invokes and Runtime API calls with a small
h11 client (so framing, trailers, HEAD and dropped connections are all visible), drives the
hand-driven runtime (`runtimes/hold.py`), and records every exchange into a transcript that
`normalise.py` turns into comparable data.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h11

from benchmarks.common import free_port, private_opt, stop_process
from client_functions import Rendezvous

HERE = Path(__file__).resolve().parent
RUNTIMES = HERE / "runtimes"
REPO = HERE.parent.parent
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
RAPI = "/2018-06-01"
MARKER = "LAMBDALET_CONFORMANCE_RUN"

# Safety nets only: a broken server makes a test fail after this long instead of hanging the run.
# No assertion depends on them.
SAFETY_S = 20.0
STARTUP_S = 10.0
RAPI_STARTUP_S = 0.5


# --------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    name: str
    argv0: tuple[str, ...]  # everything before RIE's own arguments
    env: dict[str, str] = field(default_factory=dict)


def rie_target() -> Target:
    from benchmarks.realparts import rie_binary

    return Target("rie", (str(rie_binary()),))


def lambdalet_target() -> Target:
    return Target(
        "lambdalet",
        (sys.executable, "-m", "runtime_api.rie"),
        {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
    )


# --------------------------------------------------------------------------------------------
# HTTP, one connection per exchange


@dataclass
class Reply:
    outcome: str  # "response" | "dropped" (closed with no response) | "refused" | "timeout"
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    http_version: str = ""
    received_at: float = 0.0  # time.time() when the response head arrived

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def request_id(self) -> str:
        rid = self.header("Lambda-Runtime-Aws-Request-Id")
        assert rid, f"no request id in {self}"
        return rid


def http(addr: tuple[str, int], method: str, target: str, *, body: bytes = b"",
         headers: list[tuple[str, str]] | tuple = (), chunks: list[bytes] | None = None,
         trailers: list[tuple[str, str]] | tuple = (), first_data: threading.Event | None = None,
         between_chunks=None) -> Reply:
    """One request on a fresh connection. `chunks` sends a chunked body (with `trailers`);
    `between_chunks(i)` is called after chunk i is sent; `first_data` is set when the first
    body bytes of the response arrive."""
    try:
        sock = socket.create_connection(addr, timeout=SAFETY_S)
    except ConnectionRefusedError:
        return Reply("refused")
    conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=1 << 20)
    hdrs = [("Host", f"{addr[0]}:{addr[1]}"), *headers]
    names = {k.lower() for k, _ in hdrs}
    if chunks is not None:
        if "transfer-encoding" not in names:
            hdrs.append(("Transfer-Encoding", "chunked"))
    elif body or method in ("POST", "PUT"):
        if "content-length" not in names:
            hdrs.append(("Content-Length", str(len(body))))
    try:
        try:
            sock.sendall(conn.send(h11.Request(method=method, target=target, headers=hdrs)))
            if chunks is not None:
                for i, chunk in enumerate(chunks):
                    sock.sendall(conn.send(h11.Data(data=chunk)))
                    if between_chunks:
                        between_chunks(i)
                sock.sendall(conn.send(h11.EndOfMessage(headers=list(trailers))))
            else:
                if body:
                    sock.sendall(conn.send(h11.Data(data=body)))
                sock.sendall(conn.send(h11.EndOfMessage()))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (or hung up) before reading everything: read what it said
        return _read_reply(sock, conn, first_data)
    finally:
        sock.close()


def _read_reply(sock, conn, first_data) -> Reply:
    reply = Reply("dropped")
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            reply.outcome = "dropped" if reply.status is None else "truncated"
            return reply
        if event is h11.NEED_DATA:
            try:
                data = sock.recv(1 << 16)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                reply.outcome = "timeout"
                reply.body = bytes(body)
                return reply
            conn.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            reply.outcome = "response"
            reply.status = event.status_code
            reply.headers = [(k.decode(), v.decode("latin-1")) for k, v in event.headers.raw_items()]
            reply.http_version = event.http_version.decode()
            reply.received_at = time.time()
        elif isinstance(event, h11.Data):
            if first_data is not None and event.data:
                first_data.set()
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            reply.trailers = [(k.decode(), v.decode("latin-1")) for k, v in event.headers.raw_items()]
            reply.body = bytes(body)
            return reply
        elif isinstance(event, h11.ConnectionClosed):
            return reply


def http_keepalive(addr: tuple[str, int], method: str, target: str, bodies: list[bytes]) -> list[Reply]:
    """Several requests, one after the other, on one connection; a reply of outcome
    `dropped`/`refused` ends the series (the server closed the connection)."""
    replies = []
    with socket.create_connection(addr, timeout=SAFETY_S) as sock:
        conn = h11.Connection(our_role=h11.CLIENT)
        for body in bodies:
            hdrs = [("Host", f"{addr[0]}:{addr[1]}"), ("Content-Length", str(len(body)))]
            try:
                sock.sendall(conn.send(h11.Request(method=method, target=target, headers=hdrs)))
                sock.sendall(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            except OSError:
                replies.append(Reply("dropped"))
                break
            reply = _read_reply(sock, conn, None)
            replies.append(reply)
            if reply.outcome != "response" or conn.our_state is not h11.DONE \
                    or conn.their_state is not h11.DONE:
                break
            conn.start_next_cycle()
    return replies


class Pending:
    """An exchange running in a thread; `result()` waits for it (bounded by SAFETY_S)."""

    def __init__(self, fn, *args, **kwargs):
        self.first_data = threading.Event()
        self._reply: Reply | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, fn, args, kwargs):
        self._reply = fn(*args, first_data=self.first_data, **kwargs)

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return self.done()

    def result(self) -> Reply:
        self._thread.join(SAFETY_S + 5)
        assert self._reply is not None, "exchange still running after the safety timeout"
        return self._reply


# --------------------------------------------------------------------------------------------
# The running server


class Server:
    """A started target. Use `launch()`; it guarantees `stop()`."""

    def __init__(self, target: Target, workdir: Path, args: list[str], env: dict[str, str],
                 prefix: list[str] = ()):
        self.target = target
        self.dir = workdir
        self.inv = ("127.0.0.1", free_port())
        self.rapi = ("127.0.0.1", free_port())
        self.run_id = uuid.uuid4().hex
        self.events_path = workdir / ".runtime-events"
        os.mkfifo(self.events_path)
        # Read end first, then our own write end, so the reader never sees EOF between runtimes.
        self._events_r = os.open(self.events_path, os.O_RDONLY | os.O_NONBLOCK)
        self._events_w = os.open(self.events_path, os.O_WRONLY)
        self._events_buf = b""
        self.runtimes: list[dict] = []
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            MARKER: self.run_id,
            "CONFORMANCE_DIR": str(workdir),
            "CONFORMANCE_EVENTS": str(self.events_path),
            "LAMBDA_TASK_ROOT": str(workdir),
            **target.env,
            **env,
        }
        argv = [
            *prefix,
            *target.argv0,
            "--runtime-interface-emulator-address", f"{self.inv[0]}:{self.inv[1]}",
            "--runtime-api-address", f"{self.rapi[0]}:{self.rapi[1]}",
            *[a.format(dir=workdir, python=sys.executable) for a in args],
        ]
        self.stdout_path = workdir / ".stdout"
        self.stderr_path = workdir / ".stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=workdir, env=full_env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True)
        self.exit_code: int | None = None
        self.started_at = time.time()
        self.stopping_at: float | None = None  # when stop() began: a SHUTDOWN's deadline is counted from it
        self.left_running: int | None = None  # how many of the processes it started outlived it

    # readiness: the invoke listener accepts (bounded connect-retry; the kernel tells us, no
    # guessing). RIE also opens the Runtime API listener at startup; we give it a short while,
    # and a target that does not do that shows up as `refused` in the scenarios that call it.
    def wait_listening(self, expect_exit: bool = False) -> None:
        if self._wait_port(self.inv, STARTUP_S, expect_exit) is False:
            raise RuntimeError(f"{self.target.name} did not listen on {self.inv}")
        if self.proc.poll() is None:
            self._wait_port(self.rapi, RAPI_STARTUP_S, expect_exit)

    def _wait_port(self, addr, bound: float, expect_exit: bool) -> bool | None:
        deadline = time.monotonic() + bound
        while True:
            if self.proc.poll() is not None:
                if expect_exit:
                    return None
                raise RuntimeError(f"{self.target.name} exited with {self.proc.returncode} at startup:\n"
                                   + self.stderr_path.read_text(errors="replace")[-3000:])
            try:
                socket.create_connection(addr, timeout=1).close()
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)

    def wait_stderr(self, text: str) -> bool:
        """Whether the server wrote `text` to its stderr (waited for, up to the safety timeout)."""
        deadline = time.monotonic() + SAFETY_S
        while text not in self.stderr_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def wait_exit(self, timeout: float = STARTUP_S) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # the hand-driven runtime reports each start through the FIFO
    def next_runtime(self, timeout: float = STARTUP_S) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._events_buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._events_r], [], [], left)
            if ready:
                self._events_buf += os.read(self._events_r, 4096)
        line, self._events_buf = self._events_buf.split(b"\n", 1)
        pid = int(line)
        info = json.loads((self.dir / f"runtime-{pid}.json").read_text())
        self.runtimes.append(info)
        return info

    def drain_runtimes(self) -> None:
        while self.next_runtime(timeout=0) is not None:
            pass

    def stop(self) -> None:
        if self.stopping_at is None:
            self.stopping_at = time.time()
        try:
            self.exit_code = stop_process(self.proc, 5)
            self.left_running = len(marked(self.run_id))
        finally:
            if self.proc.poll() is None:  # should not happen; never leave it behind
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            kill_marked(self.run_id)

    def close_fifo(self):
        for fd in (self._events_r, self._events_w):
            try:
                os.close(fd)
            except OSError:
                pass


def marked(run_id: str) -> list[int]:
    """The live processes whose environment carries our run marker (zombies are not alive)."""
    needle = f"{MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(run_id: str) -> None:
    """SIGKILL the process group of every process whose environment carries our run marker."""
    own = os.getpgrp()
    for pid in marked(run_id):
        try:
            pgid = os.getpgid(pid)
            if pgid != own:
                os.killpg(pgid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@contextmanager
def launch(target: Target, workdir: Path, args: list[str], env: dict[str, str], *,
           files: dict[str, str] = (), expect_exit: bool = False, opt: Path | None = None):
    """Start `target` with RIE's argv `args` in `workdir` (populated with `files` copied from
    runtimes/), yield the Server, and always stop it and everything it started. Given `opt`, the
    target sees that directory at /opt (and so its extensions/), in a mount namespace of its own."""
    prefix = private_opt(opt) if opt is not None else []
    for dst, src in dict(files).items():
        shutil.copy(RUNTIMES / src, workdir / dst)
        (workdir / dst).chmod(0o755)
    for attempt in range(3):
        server = Server(target, workdir, args, env, prefix)
        try:
            server.wait_listening(expect_exit=expect_exit)
            break
        except RuntimeError as exc:
            # Free ports are picked, then bound by the target: another process may take one in
            # between. Only that is retried, with new ports.
            server.stop()
            server.close_fifo()
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            server.close_fifo()


# --------------------------------------------------------------------------------------------
# What scenarios use


class Session:
    """The verbs of a scenario. Every exchange it makes is appended to `record`."""

    def __init__(self, server: Server, timeout_s: int, gate: Rendezvous | None = None):
        self.server = server
        self.timeout_s = timeout_s
        self.gate = gate
        self.record: list[dict] = []

    # ---- recording
    def _log(self, label: str | None, call: str, reply: Reply, **extra) -> Reply:
        self.record.append({"label": label, "call": call, "reply": reply, **extra})
        return reply

    def note(self, label: str, value) -> None:
        """Record an observation that is not an HTTP exchange (a count, a flag, an env dump)."""
        self.record.append({"label": label, "note": value})

    # ---- invoke side
    def invoke(self, body: bytes = b"{}", *, method: str = "POST", path: str = INVOKE_PATH,
               headers=(), label: str | None = None) -> Reply:
        return self._log(label, f"{method} {path}",
                         http(self.server.inv, method, path, body=body, headers=list(headers)))

    def invokes_on_one_connection(self, bodies: list[bytes], label: str) -> list[Reply]:
        replies = http_keepalive(self.server.inv, "POST", INVOKE_PATH, bodies)
        for i, reply in enumerate(replies):
            self._log(f"{label} #{i + 1}", f"POST {INVOKE_PATH}", reply)
        return replies

    def invoke_bg(self, body: bytes = b"{}", *, method: str = "POST", path: str = INVOKE_PATH,
                  headers=(), label: str | None = None) -> "Background":
        return Background(self, label, f"{method} {path}",
                          Pending(http, self.server.inv, method, path, body=body, headers=list(headers)))

    # ---- runtime API side
    def rapi(self, method: str, path: str, body: bytes = b"", *, headers=(), chunks=None,
             trailers=(), between_chunks=None, label: str | None = None) -> Reply:
        reply = http(self.server.rapi, method, path, body=body, headers=list(headers), chunks=chunks,
                     trailers=list(trailers), between_chunks=between_chunks)
        return self._log(label, f"{method} {path}", reply)

    def next(self, label: str | None = None) -> Reply:
        return self.rapi("GET", f"{RAPI}/runtime/invocation/next", label=label)

    def next_bg(self, label: str | None = None) -> "Background":
        """A /next that may block (it finishes the previous invoke, then waits for another)."""
        path = f"{RAPI}/runtime/invocation/next"
        return Background(self, label, f"GET {path}", Pending(http, self.server.rapi, "GET", path))

    def respond(self, rid: str, body: bytes, *, headers=(), label=None, **kw) -> Reply:
        return self.rapi("POST", f"{RAPI}/runtime/invocation/{rid}/response", body,
                         headers=headers, label=label, **kw)

    def error(self, rid: str, body: bytes, *, headers=(), label=None) -> Reply:
        return self.rapi("POST", f"{RAPI}/runtime/invocation/{rid}/error", body, headers=headers,
                         label=label)

    def init_error(self, body: bytes, *, headers=(), label=None) -> Reply:
        return self.rapi("POST", f"{RAPI}/runtime/init/error", body, headers=headers, label=label)

    # ---- the hand-driven runtime process (runtimes/hold.py)
    def runtime_started(self) -> dict:
        info = self.server.next_runtime()
        assert info is not None, "the runtime was not started"
        return info

    def runtime_exit(self, info: dict, code: int) -> None:
        (self.server.dir / f"exit-{info['pid']}").write_text(str(code))
        os.kill(info["pid"], signal.SIGUSR1)

    def runtime_kill(self, info: dict) -> None:
        os.kill(info["pid"], signal.SIGKILL)

    # ---- the server process
    def server_exit(self, label: str = "server exit") -> None:
        """Record whether the server is still serving; if it refuses connections, its exit code."""
        try:
            socket.create_connection(self.server.inv, timeout=1).close()
            self.note(label, "serving")
        except OSError:
            self.note(label, {"exit": self.server.wait_exit()})


class Background:
    def __init__(self, session: Session, label, call, pending: Pending):
        self.session, self.label, self.call, self.pending = session, label, call, pending
        self.recorded = False

    @property
    def first_data(self) -> threading.Event:
        return self.pending.first_data

    def answered_within(self, seconds: float) -> bool:
        """Whether the exchange finished within `seconds` (a bounded wait for an event that,
        for one of the targets, is not supposed to happen; never used as a timing assertion)."""
        return self.pending.wait(seconds)

    def result(self, label: str | None = None) -> Reply:
        reply = self.pending.result()
        if not self.recorded:
            self.recorded = True
            self.session._log(label or self.label, self.call, reply)
        return reply

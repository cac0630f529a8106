"""The real RIE with a runtime behind a recording proxy: everything the runtime sends to RIE's
Runtime API is captured (and parsed into requests), everything RIE prints is collected."""

import http.client
import io
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.realparts import rie_binary
from bootstrap_handlers.fake_api import read_request
from bootstrap_handlers.runners import RUNTIMES, base_env

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingProxy:
    """TCP pass-through from 127.0.0.1:<port> to `upstream`, recording the bytes each client sends."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seq = itertools.count()
        self.pieces = []  # (seq, connection number, bytes)
        self.lock = threading.Lock()
        self.sockets = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        for number in itertools.count():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, number), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()

    def _pump(self, src, dst, number):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if number is not None:
                    with self.lock:
                        self.pieces.append((next(self.seq), number, data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def requests(self):
        """Every complete request seen, in the order their first bytes arrived."""
        with self.lock:
            pieces = list(self.pieces)
        by_conn = {}
        for seq, number, data in pieces:
            by_conn.setdefault(number, []).append((seq, data))
        found = []
        for number, chunks in by_conn.items():
            stream = b"".join(d for _, d in chunks)
            starts = []
            offset = 0
            for seq, data in chunks:
                starts.append((offset, seq))
                offset += len(data)
            reader = io.BufferedReader(io.BytesIO(stream))
            while True:
                position = reader.tell()
                try:
                    request = read_request(reader)
                except (ValueError, IndexError):
                    break
                if request is None:
                    break
                seq = max(s for o, s in starts if o <= position)
                found.append((seq, request))
        return [r for _, r in sorted(found, key=lambda x: x[0])]

    def close(self):
        self.sock.close()
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass


class RieSession:
    def __init__(self, proc, invoke_port, proxy, pidfile):
        self.proc = proc
        self.invoke_port = invoke_port
        self.proxy = proxy
        self.pidfile = pidfile
        self.output = b""

    def invoke(self, body=b"{}", headers=None, timeout=60):
        conn = http.client.HTTPConnection("127.0.0.1", self.invoke_port, timeout=timeout)
        try:
            conn.request("POST", INVOKE_PATH, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            conn.close()


@contextmanager
def rie(kind, handler, cwd, env=None, runtime_argv=None, server=None, server_flags=()):
    """Start the real RIE (or `server`, an argv prefix of anything with RIE's command line, such as
    lambdalet-rie) with runtime `kind` (awslambdaric or bootstrap) for `handler`; the runtime talks
    to it through a RecordingProxy. Stops the server and kills the runtime's process group on exit,
    whatever happened."""
    invoke_port, rapi_port = free_port(), free_port()
    proxy = RecordingProxy(("127.0.0.1", rapi_port))
    pidfile = Path(cwd) / f".runtime-pid-{kind}"
    wrapper = Path(cwd) / f".via-proxy-{kind}.sh"
    wrapper.write_text("#!/bin/sh\n"
                       f"echo $$ > {pidfile}\n"
                       f"export AWS_LAMBDA_RUNTIME_API=127.0.0.1:{proxy.port}\n"
                       'exec "$@"\n')
    wrapper.chmod(0o755)
    argv = (server or [str(rie_binary())]) + list(server_flags) + [
            "--runtime-interface-emulator-address", f"127.0.0.1:{invoke_port}",
            "--runtime-api-address", f"127.0.0.1:{rapi_port}", str(wrapper)] + (
                runtime_argv or RUNTIMES[kind]) + ([handler] if handler else [])
    proc = subprocess.Popen(argv, cwd=cwd, env=base_env(**(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    output = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)
    reader.start()
    session = RieSession(proc, invoke_port, proxy, pidfile)
    try:
        _wait_listening(invoke_port, proc)
        yield session
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _kill_runtime(pidfile)
        reader.join(10)
        proxy.close()
        session.output = output[0] if output else b""


def _kill_runtime(pidfile):
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_listening(port, proc):
    """Readiness is the port accepting: retry connect while it is refused (bounded)."""
    for _ in range(2000):
        if proc.poll() is not None:
            raise RuntimeError(f"RIE exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except ConnectionRefusedError:
            time.sleep(0.005)  # back-off between connect attempts, not a readiness guess
    raise RuntimeError("RIE never listened")

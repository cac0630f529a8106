"""The real RIE with a runtime behind a recording proxy: everything the runtime sends to RIE's
Runtime API is captured (and parsed into requests), everything RIE prints is collected."""

import http.client
import io
import os
import signal
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import PassThroughProxy, free_port, stop_process, wait_for_port
from benchmarks.realparts import rie_binary
from bootstrap_handlers.fake_api import read_request
from bootstrap_handlers.runners import RUNTIMES, base_env

INVOKE_PATH = "/2015-03-31/functions/function/invocations"


class RecordingProxy(PassThroughProxy):
    """The pass-through proxy between the runtime and RIE's Runtime API: what the runtime sent,
    parsed into requests."""

    def requests(self):
        """Every complete request seen, in the order their first bytes arrived."""
        by_conn = {}
        for order, (_, direction, number, data) in enumerate(self.recorded()):
            if direction == "up":
                by_conn.setdefault(number, []).append((order, data))
        found = []
        for chunks in by_conn.values():
            stream = b"".join(d for _, d in chunks)
            starts = []
            offset = 0
            for order, data in chunks:
                starts.append((offset, order))
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
                order = max(o for at, o in starts if at <= position)
                found.append((order, request))
        return [r for _, r in sorted(found, key=lambda x: x[0])]


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
        wait_for_port(invoke_port, proc)
        yield session
    finally:
        stop_process(proc, 10)
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


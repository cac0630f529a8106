"""`lambdalet serve` as a process of its own, as a user starts it: its start-up lines (warnings
included), its Invoke API, its stop. Standard library only: the cgroup v2 guest
(tests/vm/guest_scenarios.py) runs it where every import costs seconds of emulated CPU."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import select
import signal
import subprocess
import threading
import time

LISTENING = re.compile(r"lambdalet: Invoke API on http://127\.0\.0\.1:(\d+)$")


class ServeProcess:
    """Started with `argv` (a `lambdalet serve ... --port 0` command line, possibly wrapped); ready
    once it says where its Invoke API listens. Its stderr is read to the end meanwhile, so a chatty
    server never blocks on a full pipe. `bound`: seconds after which a server that does not answer
    fails the test instead of hanging it."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str, stdout, bound: float) -> None:
        self.bound = bound
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.lines: list[str] = []
        self.last_log = ""
        self._rest: threading.Thread | None = None
        try:
            self.port = self._wait_listening()
        except BaseException:
            self.stop()
            raise
        self._rest = threading.Thread(target=self._read_rest, daemon=True)
        self._rest.start()

    def _wait_listening(self) -> int:
        """Read the server's stderr until it says where its Invoke API listens."""
        deadline = time.monotonic() + self.bound
        pending = b""
        while True:
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no Invoke API after {self.bound:.0f} s; stderr so far: {self.lines}")
            data = os.read(self.proc.stderr.fileno(), 65536)
            if not data:
                raise RuntimeError(f"the server exited ({self.proc.wait()}) before listening: {self.lines}")
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                self.lines.append(line.decode(errors="replace"))
                found = LISTENING.match(self.lines[-1])
                if found:
                    return int(found[1])

    def _read_rest(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.decode(errors="replace").rstrip("\n"))

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.lines if line.startswith("lambdalet: WARNING: ")]

    def invoke(self, name: str, payload: dict | None = None) -> tuple[str | None, dict]:
        """(X-Amz-Function-Error, the payload) of a RequestResponse invocation; its log tail in `last_log`."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.bound)
        try:
            conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=json.dumps(payload or {}),
                         headers={"X-Amz-Log-Type": "Tail"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise AssertionError(f"{name}: HTTP {response.status}: {body[:500]!r}")
        self.last_log = base64.b64decode(response.getheader("X-Amz-Log-Result") or "").decode(errors="replace")
        return response.getheader("X-Amz-Function-Error"), json.loads(body)

    def stop(self) -> int:
        """SIGTERM (the server kills and reaps every environment), then the exit status. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.bound)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._rest is not None:
            self._rest.join(self.bound)
        elif not self.proc.stderr.closed:
            self.lines += self.proc.stderr.read().decode(errors="replace").splitlines()
        self.proc.stderr.close()
        return self.proc.returncode

"""A small scripted Runtime API for the bootstrap's tests (standard library, threads, 127.0.0.1).

It hands out the events queued with `add_event`, records every request a runtime makes (raw head,
headers in order, body, trailers, chunk boundaries), answers posts with 202, and `restore/next`
with a configurable status. `next` with no event queued waits until one is added or the server
stops.
"""

import queue
import socket
import threading

ACCEPTED = b'{"status":"OK"}\n'


class Recorded:
    def __init__(self, method, path, headers, raw_head, body, chunks=None, trailers=None):
        self.method = method
        self.path = path
        self.headers = headers  # list of (name, value) as sent
        self.raw_head = raw_head
        self.body = body
        self.chunks = chunks  # list of chunk payloads for chunked bodies, else None
        self.trailers = trailers or []

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.method} {self.path} {self.body[:80]!r}>"


def read_request(reader, on_chunk=None):
    """Read one request from a binary file object; None at EOF."""
    lines = []
    while True:
        line = reader.readline()
        if not line:
            return None
        if line == b"\r\n":
            break
        lines.append(line)
    raw_head = b"".join(lines) + b"\r\n"
    method, path, _ = lines[0].decode().split(" ", 2)
    headers = []
    for line in lines[1:]:
        k, v = line.decode("utf-8", "surrogateescape").rstrip("\r\n").split(":", 1)
        headers.append((k, v.strip()))
    lower = {k.lower(): v for k, v in headers}
    if "chunked" in lower.get("transfer-encoding", ""):
        chunks, trailers = [], []
        while True:
            size = int(reader.readline().split(b";")[0], 16)
            if size == 0:
                break
            chunks.append(reader.read(size))
            reader.readline()
            if on_chunk is not None:
                on_chunk()
        while True:
            line = reader.readline()
            if line in (b"\r\n", b""):
                break
            k, v = line.decode().rstrip("\r\n").split(":", 1)
            trailers.append((k, v.strip()))
        return Recorded(method, path, headers, raw_head, b"".join(chunks), chunks, trailers)
    body = reader.read(int(lower.get("content-length", 0)))
    return Recorded(method, path, headers, raw_head, body)


class FakeRuntimeAPI:
    def __init__(self, restore_status=200, stall_after_chunk=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.events = queue.Queue()
        self.requests = []
        self.arrived = threading.Condition()
        self.restore_status = restore_status
        self.connections = []
        self.stopped = False
        self.accepted_connections = 0
        self.chunk_seen = threading.Event()
        self.release_stream = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    # --- scripting ----------------------------------------------------------------------------

    def add_event(self, body=b"{}", request_id="req-1", headers=None, content_type="application/json",
                  raw_response=None):
        """Queue one event for `next`. `raw_response` replaces the whole HTTP response."""
        h = {"Lambda-Runtime-Aws-Request-Id": request_id,
             "Lambda-Runtime-Deadline-Ms": "4102444800000",
             "Lambda-Runtime-Invoked-Function-Arn":
                 "arn:aws:lambda:us-east-1:012345678912:function:test_function"}
        if content_type is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        self.events.put((h, body, raw_response))

    def wait_for(self, predicate, timeout=30):
        """Block until `predicate(requests)` is true (or raise after `timeout` seconds: a hang)."""
        with self.arrived:
            if not self.arrived.wait_for(lambda: predicate(self.requests), timeout):
                raise AssertionError(f"condition not met; requests so far: {self.requests}")
        return self.requests

    def posts(self):
        return [r for r in self.requests if r.method == "POST"]

    def stop(self):
        self.stopped = True
        self.events.put(None)
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.connections:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- serving ------------------------------------------------------------------------------

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted_connections += 1
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        reader = conn.makefile("rb")
        try:
            while True:
                request = read_request(reader, self.chunk_seen.set)
                if request is None:
                    return
                with self.arrived:
                    self.requests.append(request)
                    self.arrived.notify_all()
                if not self._answer(conn, request):
                    return
        except (OSError, ValueError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _answer(self, conn, request):
        if request.method == "GET" and request.path.endswith("/runtime/invocation/next"):
            item = self.events.get()
            if item is None:
                return False
            headers, body, raw = item
            if raw is not None:
                conn.sendall(raw)
                return True
            head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if len(body) > 2048:  # as Go's net/http (and so RIE) does above 2 KB
                head += "Transfer-Encoding: chunked\r\n\r\n"
                payload = b"".join(b"%x\r\n%b\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                                   for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
            else:
                head += f"Content-Length: {len(body)}\r\n\r\n"
                payload = body
            conn.sendall(head.encode("utf-8") + payload)
            return True
        if request.method == "GET" and request.path.endswith("/runtime/restore/next"):
            status = self.restore_status
            body = b"" if status == 200 else b"404 page not found\n"
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%b" % (status, len(body), body))
            return True
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(ACCEPTED), ACCEPTED))
        return True

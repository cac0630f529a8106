"""Logging as awslambdaric does it: a sink (stdout, or the telemetry fd with typed frames), unbuffered
stdout/stderr, the runtime's own error records, and the root `logging` handler with the request id
on every line.

The `logging` package is slow to import (it pulls in `re`, `traceback`, `enum`...; its cost is in
benchmarks/results/costs.md). A handler that never imports it should not pay that, so the root
handler is installed by an import hook the moment anything imports `logging` (the handler module,
boto3, ...), before any of its code can run: user code sees a root logger already configured,
exactly as under awslambdaric.
"""

import os
import sys
import time

TEXT = "text"
JSON = "json"

# Frame types of the telemetry-fd protocol, by level (0 = unspecified).
TEXT_FRAME_TYPES = {0: 0xA55A0003, 10: 0xA55A000B, 20: 0xA55A000F, 30: 0xA55A0013, 40: 0xA55A0017,
                    50: 0xA55A001B}
JSON_FRAME_TYPES = {0: 0xA55A0002, 10: 0xA55A000A, 20: 0xA55A000E, 30: 0xA55A0012, 40: 0xA55A0016,
                    50: 0xA55A001A}
DEFAULT_FRAME_TYPE = TEXT_FRAME_TYPES[0]

NBSP = "\u00a0"

# Per-process state read by the logging filter: the invocation being handled ("" before the first).
request_id = ""
tenant_id = None


def set_invocation(new_request_id, new_tenant_id):
    global request_id, tenant_id
    request_id = new_request_id
    tenant_id = new_tenant_id


def current_invocation():
    """(request id, tenant id) of the invocation being handled, for the logging filter."""
    return request_id, tenant_id


def _after_fork_in_child():
    # A forked child (a restored snapshot template) has handled no invocation yet.
    set_invocation("", None)


os.register_at_fork(after_in_child=_after_fork_in_child)


def encode_frame(frame_type, payload, timestamp_us):
    """One telemetry frame: type (4 bytes), payload length (4), timestamp in µs (8), payload; all
    big-endian."""
    return (frame_type.to_bytes(4, "big") + len(payload).to_bytes(4, "big")
            + timestamp_us.to_bytes(8, "big") + payload)


class StdoutSink:
    """Records go to sys.stdout; the runtime's error records join their lines with \\r so that a
    line-splitting collector keeps them as one event."""

    framed = False

    def log(self, msg, frame_type=None):
        sys.stdout.write(msg)

    def log_error(self, lines):
        sys.stdout.write("\r".join(lines) + "\n")

    def close(self):
        pass


class FramedSink:
    """Records go to the telemetry fd, one frame each."""

    framed = True

    def __init__(self, fd, error_frame_type):
        self.fd = fd
        self.file = os.fdopen(fd, "wb", 0)
        self.error_frame_type = error_frame_type

    def log(self, msg, frame_type=None):
        self.file.write(encode_frame(frame_type or DEFAULT_FRAME_TYPE, msg.encode("utf-8"),
                                     time.time_ns() // 1000))

    def log_error(self, lines):
        self.log("\n".join(lines), self.error_frame_type)

    def close(self):
        self.file.close()


class Unbuffered:
    """sys.stdout/sys.stderr replacement that flushes after every write (print reaches the log at
    once, in order with the runtime's own records)."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def write(self, msg):
        self.stream.write(msg)
        self.stream.flush()

    def writelines(self, msgs):
        self.stream.writelines(msgs)
        self.stream.flush()


def level_from_env(value):
    """AWS_LAMBDA_LOG_LEVEL as awslambdaric reads it: unset -> "", exactly "TRACE" -> "DEBUG", else
    upper-cased (so "trace" stays "TRACE" and is ignored later)."""
    if value is None:
        return ""
    if value == "TRACE":
        return "DEBUG"
    return value.upper()


def format_from_env(value):
    return JSON if value and value.upper() == "JSON" else TEXT


class Logs:
    """The logging set-up of one runtime process."""

    def __init__(self, log_format, log_level, sink, ensure_ascii=True):
        self.format = log_format
        self.level = log_level
        self.sink = sink
        self.ensure_ascii = ensure_ascii  # awslambdaric logs errors with its response encoder
        self._hook = None

    # --- the runtime's own records ------------------------------------------------------------

    def log_error(self, error):
        """Log an error body (errorType, errorMessage, stackTrace...) as awslambdaric does."""
        if self.format == JSON:
            record = {"timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time())),
                      "level": "ERROR", **error}
            from bootstrap.marshalling import Encoder
            self.sink.log_error([Encoder(self.ensure_ascii).encode(record)])
            return
        head = "[ERROR]"
        error_type = error.get("errorType")
        message = error.get("errorMessage")
        if error_type:
            head += " " + error_type
        if message:
            if error_type:
                head += ":"
            head += " " + message
        lines = [head]
        trace = error.get("stackTrace")
        if trace is not None:
            lines.append("Traceback (most recent call last):")
            for element in trace:
                if element == "":
                    lines.append("")
                    continue
                for line in element.splitlines():
                    stripped = line.lstrip(" ")
                    lines.append(NBSP * (len(line) - len(stripped)) + stripped)
        self.sink.log_error(lines)

    def context_log(self, msg):
        """LambdaContext.log: the message as is, to the sink of the first root handler that has
        one, else stdout."""
        logging = sys.modules.get("logging")
        if logging is None:
            self.sink.log(str(msg))
            return
        for handler in logging.getLogger().handlers:
            if hasattr(handler, "log_sink"):
                handler.log_sink.log(str(msg))
                return
        sys.stdout.write(str(msg))

    def warning(self, message):
        """A WARNING record through the root logger (importing logging if nobody has)."""
        import logging
        logging.warning(message)

    # --- the root logging handler -------------------------------------------------------------

    def install_logging(self):
        """Configure the root logger now if `logging` is loaded, else when it first gets imported."""
        if "logging" in sys.modules:
            self.configure_logging(sys.modules["logging"])
        else:
            self._hook = _LoggingImportHook(self.configure_logging)
            sys.meta_path.insert(0, self._hook)

    @property
    def json(self):
        return self.format == JSON

    def configure_logging(self, logging):
        from bootstrap import logsetup
        logsetup.configure(logging, self, current_invocation, TEXT_FRAME_TYPES, JSON_FRAME_TYPES)


class _LoggingImportHook:
    """A meta-path finder that lets the normal finders load `logging`, then runs `on_loaded` on the
    fresh module before the importer gets it. Removes itself on first use."""

    def __init__(self, on_loaded):
        self.on_loaded = on_loaded

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _ConfiguringLoader(spec.loader, self.on_loaded)
        return spec

    def invalidate_caches(self):
        pass


class _ConfiguringLoader:
    def __init__(self, loader, on_loaded):
        self.loader = loader
        self.on_loaded = on_loaded

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # Put the real loader back first, so the module looks exactly as if imported normally.
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        self.on_loaded(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


def open_sink(telemetry_fd, log_format):
    if telemetry_fd is None:
        return StdoutSink()
    error_type = (JSON_FRAME_TYPES if log_format == JSON else TEXT_FRAME_TYPES)[40]
    return FramedSink(telemetry_fd, error_type)


def wrap_std_streams():
    sys.stdout = Unbuffered(sys.stdout)
    sys.stderr = Unbuffered(sys.stderr)

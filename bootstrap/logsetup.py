"""The root `logging` handler, formatters and filter (imported only once `logging` is).

Class names are awslambdaric's: some libraries recognise the Lambda handler by its class name.
What they need of the runtime's logging (bootstrap/logs.py: its sink, format and level, the
invocation being handled, the telemetry frame types) is given to `configure`, so this module
imports nothing of the runtime's."""

import logging
import time
import traceback

TEXT_FORMAT = "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n"
TEXT_DATEFMT = "%Y-%m-%dT%H:%M:%S"
JSON_DATEFMT = "%Y-%m-%dT%H:%M:%SZ"

# LogRecord attributes that are not user `extra` fields (the set awslambdaric skips).
RESERVED = frozenset({
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info",
    "exc_text", "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread",
    "threadName", "processName", "process", "aws_request_id", "tenant_id", "_frame_type",
})


def rounded_level(record):
    """The level to the multiple of 10 below, within 0..50 (a custom level 25 counts as INFO)."""
    return min(50, max(0, record.levelno)) // 10 * 10


class LambdaLoggerFilter(logging.Filter):
    def __init__(self, current_invocation):
        super().__init__()
        self._current_invocation = current_invocation  # () -> (request id, tenant id)

    def filter(self, record):
        request_id, record.tenant_id = self._current_invocation()
        record.aws_request_id = request_id or ""
        return True


class LambdaLoggerHandler(logging.Handler):
    """Every record in the default frame type (text format without a log level)."""

    def __init__(self, log_sink):
        super().__init__()
        self.log_sink = log_sink

    def emit(self, record):
        self.log_sink.log(self.format(record))


class LambdaLoggerHandlerWithFrameType(logging.Handler):
    """Every record in its level's frame type (JSON format, or a log level set)."""

    def __init__(self, log_sink, text_frame_types):
        super().__init__()
        self.log_sink = log_sink
        self._text_frame_types = text_frame_types

    def emit(self, record):
        text = self.format(record)
        frame_type = (getattr(record, "_frame_type", None)
                      or self._text_frame_types.get(rounded_level(record)))
        self.log_sink.log(text, frame_type)


class JsonFormatter(logging.Formatter):
    def __init__(self, json_frame_types=None):
        super().__init__(datefmt=JSON_DATEFMT)
        import json
        self._encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
        self._frame_types = json_frame_types or {}

    def format(self, record):
        record.levelno = rounded_level(record)
        record.levelname = logging.getLevelName(record.levelno)
        record._frame_type = self._frame_types.get(record.levelno, self._frame_types.get(0))
        exc_info = record.exc_info
        msg = record.msg
        fields = {
            "timestamp": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "message": msg if isinstance(msg, dict) and not record.args else record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc_info[2]) if exc_info else None,
            "errorType": exc_info[0].__name__ if exc_info else None,
            "errorMessage": str(exc_info[1]) if exc_info else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": (f"{record.pathname}:{record.funcName}:{record.lineno}"
                         if exc_info else None),
        }
        if getattr(record, "tenant_id", None) is not None:
            fields["tenantId"] = record.tenant_id
        for key, value in record.__dict__.items():
            if key not in RESERVED and key not in fields:
                fields[key] = value
        return self._encode({k: v for k, v in fields.items() if v is not None}) + "\n"


def configure(logging_module, runtime_logs, current_invocation, text_frame_types, json_frame_types):
    """Install the root handler for `runtime_logs` (bootstrap.logs.Logs)."""
    logging_module.Formatter.converter = time.gmtime
    root = logging_module.getLogger()
    if runtime_logs.json or runtime_logs.level:
        handler = LambdaLoggerHandlerWithFrameType(runtime_logs.sink, text_frame_types)
    else:
        handler = LambdaLoggerHandler(runtime_logs.sink)
    if runtime_logs.json:
        handler.setFormatter(JsonFormatter(json_frame_types))
    else:
        handler.setFormatter(logging_module.Formatter(TEXT_FORMAT, TEXT_DATEFMT))
    if runtime_logs.level in logging_module._nameToLevel:
        root.setLevel(runtime_logs.level)
    handler.addFilter(LambdaLoggerFilter(current_invocation))
    root.addHandler(handler)


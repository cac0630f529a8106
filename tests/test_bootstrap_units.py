"""Unit tests of LambdaContext, the error log formats, the telemetry frame format, the JSON log
formatter, handler resolution and the configuration, each checked against awslambdaric's own
implementation where it has one."""

import io
import json
import logging
import sys
import time

import pytest
from awslambdaric import bootstrap as ric_bootstrap
from awslambdaric import lambda_runtime_log_utils as ric_log_utils
from awslambdaric.lambda_context import LambdaContext as RicContext

from bootstrap import logs, logsetup
from bootstrap.config import Config, ConfigError
from bootstrap.context import FunctionInfo, LambdaContext
from bootstrap.loader import load_handler
from bootstrap.marshalling import Fault

ENV = {"AWS_LAMBDA_FUNCTION_NAME": "fn", "AWS_LAMBDA_FUNCTION_VERSION": "7",
       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
       "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/27/[7]abc"}


def both_contexts(monkeypatch, client_context=None, cognito=None, deadline=0, tenant=None):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cc = json.loads(json.dumps(client_context)) if client_context is not None else None
    ours = LambdaContext("rid", cc, cognito, deadline, "arn:x", tenant, FunctionInfo.from_environ(ENV))
    cc = json.loads(json.dumps(client_context)) if client_context is not None else None
    theirs = RicContext("rid", cc, cognito, deadline, "arn:x", tenant)
    return ours, theirs


@pytest.mark.parametrize("client_context, cognito, tenant", [
    (None, None, None),
    ({"custom": {"a": 1}, "env": {"b": 2}, "client": {"installation_id": "i", "app_title": "t",
                                                      "unknown": "dropped"}}, None, "ten"),
    ({"custom": None, "w3c": {"traceparent": "tp", "tracestate": 5, "baggage": "b"}},
     {"cognitoIdentityId": "id", "cognitoIdentityPoolId": "pool"}, None),
    ({"w3c": "not a dict"}, {}, ""),
])
def test_context_matches_awslambdaric(monkeypatch, client_context, cognito, tenant):
    ours, theirs = both_contexts(monkeypatch, client_context, cognito, tenant=tenant)
    assert repr(ours) == repr(theirs)
    assert ours.w3c() == theirs.w3c()
    for name in ("aws_request_id", "log_group_name", "log_stream_name", "function_name",
                 "memory_limit_in_mb", "function_version", "invoked_function_arn", "tenant_id"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert repr(ours.identity) == repr(theirs.identity)
    assert repr(ours.client_context) == repr(theirs.client_context)


def test_remaining_time(monkeypatch):
    now_ms = int(time.time() * 1000)
    ours, _ = both_contexts(monkeypatch, deadline=now_ms + 60_000)
    assert 0 < ours.get_remaining_time_in_millis() <= 60_000
    past, _ = both_contexts(monkeypatch, deadline=now_ms - 5)
    assert past.get_remaining_time_in_millis() == 0
    none, _ = both_contexts(monkeypatch, deadline=0)
    assert none.get_remaining_time_in_millis() == 0


def test_context_log_without_logging_sink_goes_to_stdout(capsys):
    LambdaContext("r", None, None, 0).log("plain")
    assert capsys.readouterr().out == "plain"


# --- the runtime's error records ------------------------------------------------------------------

ERRORS = [
    {"errorMessage": "bad value", "errorType": "ValueError", "requestId": "r",
     "stackTrace": ['  File "/var/task/app.py", line 4, in handler\n    raise ValueError("bad value")\n',
                    "", '  File "/x.py", line 1, in f\n']},
    {"errorMessage": "", "errorType": "CustomError", "requestId": "", "stackTrace": []},
    {"errorMessage": "only message", "errorType": "", "requestId": "", "stackTrace": []},
    {"errorMessage": "", "errorType": "", "requestId": "", "stackTrace": []},
    {"errorMessage": "multi\nline é", "errorType": "E", "requestId": "r", "stackTrace": None},
]


class CaptureSink:
    def __init__(self):
        self.calls = []

    def log_error(self, lines):
        self.calls.append(lines)


@pytest.mark.parametrize("error", ERRORS)
def test_text_error_record_lines_match_awslambdaric(error):
    ours, theirs = CaptureSink(), CaptureSink()
    logs.Logs(logs.TEXT, "", ours).log_error(dict(error))
    ric_bootstrap.log_error(dict(error), theirs)  # the module was imported in text mode
    assert ours.calls == theirs.calls


def test_stdout_error_record_joins_with_carriage_returns(capsys):
    logs.StdoutSink().log_error(["[ERROR] E: m", "Traceback (most recent call last):", "\xa0\xa0x"])
    assert capsys.readouterr().out == "[ERROR] E: m\rTraceback (most recent call last):\r\xa0\xa0x\n"


def test_json_error_record(monkeypatch):
    sink = CaptureSink()
    logs.Logs(logs.JSON, "", sink).log_error(dict(ERRORS[0]))
    (lines,) = sink.calls
    record = json.loads(lines[0])
    assert list(record) == ["timestamp", "level", "errorMessage", "errorType", "requestId",
                            "stackTrace"]
    assert record["level"] == "ERROR" and record["stackTrace"] == ERRORS[0]["stackTrace"]
    assert lines[0].startswith('{"timestamp": "') and '", "level": "ERROR", ' in lines[0]


def test_frame_bytes():
    assert logs.encode_frame(0xA55A0003, b"hi", 1_700_000_000_123_456) == (
        b"\xa5\x5a\x00\x03" + (2).to_bytes(4, "big") + (1_700_000_000_123_456).to_bytes(8, "big")
        + b"hi")


def test_framed_sink_matches_awslambdaric(tmp_path):
    def frames(sink_factory, message_lines, records):
        path = tmp_path / "fd"
        with open(path, "wb") as f:
            sink = sink_factory(f.fileno())
            if hasattr(sink, "__enter__"):
                sink.__enter__()
            for r in records:
                sink.log(r)
            sink.log_error(message_lines)
            sink.file.flush()
        data = path.read_bytes()
        out = []
        while data:
            n = int.from_bytes(data[4:8], "big")
            out.append((data[:4], data[16:16 + n]))
            data = data[16 + n:]
        return out

    import os
    lines = ["[ERROR] E: m", "Traceback (most recent call last):", "", "\xa0\xa0é"]
    ours = frames(lambda fd: logs.FramedSink(os.dup(fd), logs.TEXT_FRAME_TYPES[40]), lines,
                  ["a\n", "ü\n"])
    theirs = frames(lambda fd: ric_bootstrap.FramedTelemetryLogSink(os.dup(fd)), lines,
                    ["a\n", "ü\n"])
    assert ours == theirs


# --- the logging formatter -------------------------------------------------------------------------

def make_record(msg, args=(), level=logging.WARNING, exc=False, **extra):
    exc_info = None
    if exc:
        try:
            raise KeyError("k")
        except KeyError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("child", level, "/var/task/app.py", 12, msg, args, exc_info,
                               func="handler")
    record.created = 1_800_000_000.25
    record.msecs = 250.0
    for k, v in extra.items():
        setattr(record, k, v)
    record.aws_request_id = "rid"
    record.tenant_id = extra.get("tenant_id")
    return record


@pytest.mark.parametrize("kwargs", [
    dict(msg="hello %s", args=("world",)),
    dict(msg={"structured": [1, 2]}),
    dict(msg="with extra", extra_field={"nested": object}, other=3),
    dict(msg="caught", exc=True),
    dict(msg="custom level", level=25),
    dict(msg="tenant", tenant_id="t-1"),
    dict(msg="huge level", level=99),
])
def test_json_formatter_matches_awslambdaric(kwargs):
    kwargs = dict(kwargs)
    msg, args = kwargs.pop("msg"), kwargs.pop("args", ())
    level, exc = kwargs.pop("level", logging.WARNING), kwargs.pop("exc", False)
    ours = logsetup.JsonFormatter().format(make_record(msg, args, level, exc, **kwargs))
    theirs = ric_log_utils.JsonFormatter().format(make_record(msg, args, level, exc, **kwargs))
    assert ours == theirs


@pytest.mark.parametrize("value, expected", [(None, ""), ("TRACE", "DEBUG"), ("trace", "TRACE"),
                                             ("warn", "WARN"), ("Info", "INFO"), ("", "")])
def test_log_level_from_env_matches_awslambdaric(value, expected):
    assert logs.level_from_env(value) == expected == ric_log_utils._get_log_level_from_env_var(value)


@pytest.mark.parametrize("value", [None, "", "json", "JSON", "Json", "text", "xml"])
def test_log_format_from_env(value):
    ours = logs.format_from_env(value) == logs.JSON
    assert ours == (ric_log_utils.LogFormat.from_str(value) == ric_log_utils.LogFormat.JSON)


def test_unbuffered_flushes_every_write():
    class Stream(io.StringIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    s = Stream()
    wrapped = logs.Unbuffered(s)
    wrapped.write("a")
    wrapped.writelines(["b", "c"])
    assert (s.getvalue(), s.flushes) == ("abc", 2)
    assert wrapped.getvalue() == "abc"  # everything else is delegated


# --- handler resolution ------------------------------------------------------------------------

@pytest.mark.parametrize("handler, error_type, message", [
    ("nodot", "Runtime.MalformedHandlerName",
     "Bad handler 'nodot': not enough values to unpack (expected 2, got 1)"),
    ("time.handler", "Runtime.BuiltInModuleConflict", "Cannot use built-in module time as a handler module"),
    ("no_such_module_q.handler", "Runtime.ImportModuleError",
     "Unable to import module 'no_such_module_q': No module named 'no_such_module_q'"),
    ("bootstrap.wire.nope", "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'bootstrap.wire'"),
])
def test_handler_resolution_errors(handler, error_type, message):
    with pytest.raises(Fault) as info:
        load_handler(handler)
    assert (info.value.error_type, info.value.message, info.value.trace) == (error_type, message, None)


def test_nested_builtin_name_is_no_conflict():
    assert load_handler("bootstrap/wire.INIT_ERROR") == "/2018-06-01/runtime/init/error"


def test_config_from_environment():
    config = Config.from_environ(["bootstrap"], {"_HANDLER": "app.h", "AWS_LAMBDA_RUNTIME_API": "h:1",
                                                 "AWS_LAMBDA_LOG_FORMAT": "json",
                                                 "_LAMBDA_TELEMETRY_LOG_FD": "7",
                                                 "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13"})
    assert (config.handler, config.runtime_api, config.log_format, config.telemetry_fd,
            config.ensure_ascii, config.python_path_set) == ("app.h", "h:1", "json", 7, False, False)
    assert Config.from_environ(["b", "argv.h"], {"_HANDLER": "env.h",
                                                 "AWS_LAMBDA_RUNTIME_API": "x:1"}).handler == "argv.h"
    with pytest.raises(ConfigError):
        Config.from_environ(["b"], {"AWS_LAMBDA_RUNTIME_API": "x:1"})
    with pytest.raises(ConfigError):
        Config.from_environ(["b", "a.h"], {})

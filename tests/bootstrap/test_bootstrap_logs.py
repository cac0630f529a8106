"""bootstrap.logs: the runtime's error records (text and JSON), the telemetry frame format, and
the log level and format taken from the environment, each checked against awslambdaric's own."""

import io
import json
import os

import pytest
from awslambdaric import bootstrap as ric_bootstrap
from awslambdaric import lambda_runtime_log_utils as ric_log_utils

from bootstrap import logs

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

    lines = ["[ERROR] E: m", "Traceback (most recent call last):", "", "\xa0\xa0é"]
    ours = frames(lambda fd: logs.FramedSink(os.dup(fd), logs.TEXT_FRAME_TYPES[40]), lines,
                  ["a\n", "ü\n"])
    theirs = frames(lambda fd: ric_bootstrap.FramedTelemetryLogSink(os.dup(fd)), lines,
                    ["a\n", "ü\n"])
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

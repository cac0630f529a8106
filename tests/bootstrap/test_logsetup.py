"""bootstrap.logsetup: the JSON log formatter, checked against awslambdaric's own."""

import logging
import sys

import pytest
from awslambdaric import lambda_runtime_log_utils as ric_log_utils

from bootstrap import logsetup


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

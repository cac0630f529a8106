"""bootstrap.context: the LambdaContext a handler gets, checked against awslambdaric's own."""

import json
import time

import pytest
from awslambdaric.lambda_context import LambdaContext as RicContext

from bootstrap.context import FunctionInfo, LambdaContext

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

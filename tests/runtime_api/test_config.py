"""runtime_api.config: the availability zone ids and function ARNs a function is shown, and the logging
settings its runtime gets."""

from __future__ import annotations

import pytest

from runtime_api.config import availability_zone_id, function_arn


@pytest.mark.parametrize("region, zone", [("us-east-1", "use1-az1"), ("eu-west-1", "euw1-az1"),
                                          ("ap-northeast-1", "apne1-az1"), ("eu-central-1", "euc1-az1")])
def test_availability_zone_ids(region, zone):
    assert availability_zone_id(region) == zone


def test_function_arns():
    assert function_arn("f") == "arn:aws:lambda:us-east-1:123456789012:function:f"


def test_a_logging_config_reaches_the_runtime_as_lambda_passes_it():
    from runtime_api.config import FunctionConfig, runtime_environment

    def logging_env(**settings):
        env = runtime_environment(FunctionConfig(name="f", **settings), "127.0.0.1:9001", host_env={})
        return {key: env[key] for key in ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL") if key in env}

    assert logging_env() == {}
    assert logging_env(log_format="Text") == {"AWS_LAMBDA_LOG_FORMAT": "Text"}
    assert logging_env(log_format="JSON") == {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"}
    assert logging_env(log_format="JSON", application_log_level="DEBUG")["AWS_LAMBDA_LOG_LEVEL"] == "DEBUG"

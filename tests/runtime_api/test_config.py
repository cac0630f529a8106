"""runtime_api.config: the availability zone ids and function ARNs a function is shown."""

from __future__ import annotations

import pytest

from runtime_api.config import availability_zone_id, function_arn


@pytest.mark.parametrize("region, zone", [("us-east-1", "use1-az1"), ("eu-west-1", "euw1-az1"),
                                          ("ap-northeast-1", "apne1-az1"), ("eu-central-1", "euc1-az1")])
def test_availability_zone_ids(region, zone):
    assert availability_zone_id(region) == zone


def test_function_arns():
    assert function_arn("f") == "arn:aws:lambda:us-east-1:123456789012:function:f"
